"""The ``push`` verb: share a run's adapter on the Hugging Face Hub, with the model card ``kinject.sharing.card``
writes, in
one commit.

The token comes from the caller (the app's field) or ``HF_TOKEN``; it is only ever held in memory and every message
that leaves this module is scrubbed of it. A push checks everything it can before it touches the Hub, retries
5xx answers and network failures with backoff, and leaves the run folder as it was unless it succeeded (then the
card is kept in ``adapter/README.md`` and the push is recorded).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.hub import hub_endpoint, network_errors, scrub
from ..runs import RunDir, RunError
from ..runtime.errors import KinjectError
from ..runtime.progress import Progress
from ..settings.services import PublishConfig
from .card import model_card, non_public_sources, non_public_warning

TOKENS_URL = "https://huggingface.co/settings/tokens"


class PublishError(KinjectError, RuntimeError):
    """A push failed; the message says which step, why and what to do (and never holds the token)."""


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
    warning: str = (
        ""  # the card lists sources that are no public web pages (see kinject.sharing.card.non_public_sources)
    )

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
    progress = progress or Progress()
    token = (token or "").strip()
    if not token and server_token:
        token = os.environ.get("HF_TOKEN", "").strip() or _saved_token()
    try:
        run = RunDir(run_dir)
        adapter = _check_before_upload(run, config, token)  # a push that cannot succeed must not reach the Hub
        return _Push(run, config, token, progress).upload(adapter)
    except PublishError as exc:
        raise PublishError(scrub(str(exc), token)) from None


def _check_before_upload(run: RunDir, config: PublishConfig, token: str) -> Path:
    """The run's adapter folder, once every check that needs no network has passed."""
    if not config.repo:
        raise PublishError("no repository given: name one as OWNER/NAME with --repo")
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
    return adapter


class _Push:
    """One push to the Hub: its calls (each retried), its steps on the progress bar, the commit, and the record the
    run keeps of it."""

    def __init__(self, run: RunDir, config: PublishConfig, token: str, progress: Progress):
        from huggingface_hub import HfApi

        self.run, self.config, self.progress = run, config, progress
        self.endpoint = hub_endpoint()
        self.api = HfApi(endpoint=self.endpoint, token=token)
        self.size_mb = 0.0  # of the files to upload

    def hub(self, call: Any, what: str) -> Any:
        """A Hub call, retried after a 5xx or a network failure; any other error a PublishError."""
        return _retrying(call, what, self.config, self.progress, self.endpoint)

    def repo_exists(self) -> bool:
        return self.hub(lambda: self.api.repo_exists(self.config.repo), "looking up the repository")

    def step_done(self) -> None:
        self.progress.advance(1)
        if self.progress.should_stop():
            raise InterruptedError("push stopped before the upload: nothing was committed")

    def upload(self, adapter: Path) -> PushResult:
        """Check the token's rights, create the repository (and branch), commit the files, record the push."""
        api, config, progress = self.api, self.config, self.progress
        progress.start("push", total=5 + (1 if config.revision else 0), unit="step")
        who = self.hub(api.whoami, "checking the token")
        _check_rights(who, config.repo, self.repo_exists)
        self.step_done()

        card = model_card(self.run, config.repo)
        # Not refused: a source on a private network may be meant (an intranet wiki); the pusher is told what goes.
        if warning := non_public_warning(non_public_sources(self.run.read_sources())):
            progress.log(f"warning: {warning}")
        files = self.files(adapter, card)
        created = self.hub(lambda: _create(api, config), "creating the repository")
        self.step_done()
        if config.revision:
            self.hub(
                lambda: api.create_branch(config.repo, branch=config.revision, exist_ok=True),
                f"creating branch {config.revision}",
            )
            self.step_done()
        before = self.hub(lambda: api.model_info(config.repo, revision=config.revision), "reading the repository")
        self.step_done()
        info = self.commit(files, self.stale(before), created)
        progress.advance(1)

        url = f"{self.endpoint.rstrip('/')}/{config.repo}"
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
            warning=warning,
        )
        self.record(card, result)
        progress.advance(1)
        progress.finish()
        return result

    def files(self, adapter: Path, card: str) -> list[tuple[str, str | bytes]]:
        """What goes up, as (path in the repository, file or bytes): the adapter with the card as its README, and
        the merged model when asked. Each attempt makes its own operations from these, since huggingface_hub marks
        operations uploaded and frees their content."""
        files: list[tuple[str, str | bytes]] = [(p.relative_to(adapter).as_posix(), str(p)) for p in _files(adapter)]
        files = [(path, src) for path, src in files if path != RunDir.CARD] + [(RunDir.CARD, card.encode("utf-8"))]
        if self.config.merged:
            merged = self.run.merged_dir
            files += [(f"{RunDir.MERGED_IN_REPO}/{p.relative_to(merged).as_posix()}", str(p)) for p in _files(merged)]
        self.size_mb = sum(_size(src) for _, src in files) / 1e6  # now, before the Hub is touched
        return files

    def stale(self, before: Any) -> list[str]:
        """The repository's merged model of an earlier adapter, removed by a push without the merged model."""
        stale = [
            f.rfilename
            for f in before.siblings or []
            if not self.config.merged and f.rfilename.startswith(f"{RunDir.MERGED_IN_REPO}/")
        ]
        if stale:
            self.progress.log(
                f"removing the repository's {RunDir.MERGED_IN_REPO}/ ({len(stale)} files): it is the merged model of "
                "an earlier adapter (push with the merged model to replace it instead)"
            )
        return stale

    def commit(self, files: list[tuple[str, str | bytes]], stale: list[str], created: _Created) -> Any:
        """One commit of ``files`` (and the removal of ``stale``); a repository this push created is deleted again
        when it fails."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        config, run = self.config, self.run
        message = config.message or _commit_message(run)
        self.progress.log(f"uploading {len(files)} files ({self.size_mb:.1f} MB) to {config.repo}")

        def commit() -> Any:
            try:
                return self.api.create_commit(
                    config.repo,
                    operations=[CommitOperationAdd(path_in_repo=path, path_or_fileobj=src) for path, src in files]
                    + [CommitOperationDelete(path_in_repo=f) for f in stale],
                    commit_message=message,
                    commit_description=f"Pushed by kinject from run {run.name}.",
                    revision=config.revision,
                )
            except (ConnectionError, RuntimeError) as exc:  # hf_xet's: its storage refused, or is not there
                hint = "" if "xet" not in str(exc).lower() else _XET_HINT
                raise PublishError(f"the Hub at {self.endpoint} refused the upload: {_one_line(exc)}{hint}") from None

        try:
            return self.hub(commit, "uploading the files")
        except BaseException:
            if created.created:  # no repository left behind empty by the push that made it
                _delete_created(self.api, config, self.progress)
            raise

    def record(self, card: str, result: PushResult) -> None:
        """Only now, with the push done, does the run change: the card beside the adapter, and the push recorded."""
        try:
            self.run.write_card(card)
            pushed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.run.append_push({**result.to_dict(), "pushed_at": pushed_at})
        except OSError as exc:
            result.note = f"pushed, but the card could not be kept in {self.run.adapter_dir} ({exc.strerror or exc})"
            self.progress.log(result.note)


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
        except network_errors() as exc:
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
