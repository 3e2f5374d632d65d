"""Evaluation: did the adapter learn the run's facts, and what did training cost the chat model? (stage: evaluate)

Knowledge probes (a probe file, or completion probes cut from the run's own corpus) and retention probes (shipped
with kinject) are answered by the base model and by the adapter from one model load: the base is the same PeftModel
with its adapter switched off, so both sides see identical weights, prompts and decoding. Accuracy is "the answer
contains an accepted alias"; the mean log-likelihood of the accepted answer is reported beside it as a graded
signal that is less noisy than pass/fail on small models. Forgetting is measured on shipped general data:
KL(base || adapter) over the base model's own greedy answers to general chat prompts, and the perplexity ratio on a
general text sample. The report goes to ``eval.json``, ``eval.md`` and ``eval.png`` in the run folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import runs
from .config import EvalConfig, GenerationConfig, to_dict
from .progress import Progress

DATA_DIR = Path(__file__).parent / "data"
RETENTION_PROBES = DATA_DIR / "retention_probes.jsonl"
GENERAL_PROMPTS = DATA_DIR / "general_prompts.jsonl"
GENERAL_TEXT = DATA_DIR / "general_text.txt"
EVAL_MD = "eval.md"
EVAL_PNG = "eval.png"

KINDS = ("knowledge", "retention")
PROBE_FIELDS = ("id", "kind", "question", "prompt", "answers", "source_passage")
PPL_MAX_CHUNK = 1024  # tokens per perplexity window (the model's context when shorter)
SAMPLING_SEED = 1234  # only used when temperature asks for sampling: base and adapter draw the same way


class EvalError(RuntimeError):
    """Evaluation cannot run; the message says why and what to do."""


class ProbeError(EvalError):
    """A probe file is malformed; the message names the file, line and field."""


class EvalStopped(EvalError):
    """The user asked to stop; nothing was written."""


@dataclass
class Probe:
    """One question with its accepted answers. No answers: it counts only for behaviour (ending the turn)."""

    id: str
    kind: str  # knowledge | retention
    question: str = ""  # chat form
    prompt: str = ""  # completion form (fed as raw text, no chat template)
    answers: list[str] = field(default_factory=list)
    source_passage: str = ""
    origin: str = "file"  # file | auto | shipped


# --------------------------------------------------------------------------------------------------- probe files


def load_probes(path: str | Path, origin: str = "file") -> list[Probe]:
    """Read a probe file (JSONL, one probe a line; blank lines skipped), naming the line and field of any error."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ProbeError(f"cannot read probe file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProbeError(f"{path.name}: not UTF-8 text") from None
    probes: list[Probe] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProbeError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        probe = _probe_from_row(row, where, origin)
        if probe.id in first_line:
            raise ProbeError(f"{where}: field 'id' repeats {probe.id!r} from line {first_line[probe.id]}")
        first_line[probe.id] = number
        probes.append(probe)
    if not probes:
        raise ProbeError(f"{path.name}: holds no probes")
    return probes


def _probe_from_row(row: Any, where: str, origin: str) -> Probe:
    if not isinstance(row, dict):
        raise ProbeError(f"{where}: must be a JSON object with fields {', '.join(PROBE_FIELDS)}")
    for key in row:
        if key not in PROBE_FIELDS:
            raise ProbeError(f"{where}: field {key!r} is unknown (expected {', '.join(PROBE_FIELDS)})")
    pid = row.get("id")
    if not isinstance(pid, str) or not pid.strip():
        raise ProbeError(f"{where}: field 'id' must be a non-empty string")
    if row.get("kind") not in KINDS:
        raise ProbeError(f"{where}: field 'kind' must be knowledge or retention")
    for key in ("question", "prompt", "source_passage"):
        if not isinstance(row.get(key, ""), str):
            raise ProbeError(f"{where}: field {key!r} must be a string")
    question, prompt = row.get("question", "").strip(), row.get("prompt", "").strip()
    if not question and not prompt:
        raise ProbeError(f"{where}: field 'question' is missing (give a question, a prompt or both)")
    answers = row.get("answers")
    if answers is None:
        answers = []
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ProbeError(f"{where}: field 'answers' must be a list of non-empty strings")
    return Probe(
        id=pid.strip(),
        kind=row["kind"],
        question=question,
        prompt=prompt,
        answers=[a.strip() for a in answers],
        source_passage=row.get("source_passage", ""),
        origin=origin,
    )


def shipped_retention_probes() -> list[Probe]:
    """kinject's general-knowledge and chat-behaviour probes (answers chosen so the bundled base gets them right)."""
    return load_probes(RETENTION_PROBES, origin="shipped")


def general_prompts() -> list[dict[str, str]]:
    """The fixed general chat prompts over which KL(base || adapter) is measured."""
    return runs.read_jsonl(GENERAL_PROMPTS)


def general_text() -> str:
    """The general text sample (written for kinject) on which the perplexity ratio is measured."""
    return GENERAL_TEXT.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------------ scoring

# A number written with thousands separators (comma, space, no-break or thin space): "3,200", "3 200", "1,234,567".
_GROUPED_NUMBER = re.compile(r"(?<![\d.])\d{1,3}(?:[,\u00a0\u202f\u2009 ]\d{3})+(?!\d)")
_ALNUM = r"[^\W_]"


def normalize_answer(text: str) -> str:
    """Lower-case text with the differences that do not change a fact taken out.

    Thousands separators go ("3,200" and "3 200" read "3200"), a zero fraction goes ("100.0" reads "100"), a unit
    glued to a number is split off ("2TB" reads "2 tb"), hyphens between words and runs of whitespace become one
    space. Applied to both the answer and the alias, so they meet on the same form.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text).replace("\u2019", "'")
    text = _GROUPED_NUMBER.sub(lambda m: re.sub(r"\D", "", m.group()), text)
    text = re.sub(r"(?<=\d)\.0+(?!\d|\.\d)", "", text)
    text = re.sub(r"(?<=\d)(?=[^\W\d_])", " ", text)
    text = re.sub(r"(?<=\w)-(?=\w)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _alias_pattern(alias: str) -> re.Pattern[str]:
    # Boundaries keep "8" from matching inside "128" or "8.5", and "eight" inside "eighteen"; a plural still counts.
    start = rf"(?<!{_ALNUM})(?<!\d\.)" if re.match(_ALNUM, alias) else ""
    if alias[-1].isdigit():
        end = r"(?!\d)(?!\.\d)"
    elif re.match(_ALNUM, alias[-1]):
        end = rf"(?:'?s|es)?(?!{_ALNUM})"
    else:
        end = ""
    return re.compile(start + re.escape(alias) + end)


def match_answer(answer: str, aliases: list[str]) -> str | None:
    """The first accepted alias that ``answer`` contains (see ``normalize_answer``), or None."""
    text = normalize_answer(answer)
    for alias in aliases:
        norm = normalize_answer(alias)
        if norm and _alias_pattern(norm).search(text):
            return alias
    return None


def is_correct(answer: str, aliases: list[str]) -> bool | None:
    """Whether the answer holds an accepted alias; None for a behaviour-only probe (no aliases)."""
    if not aliases:
        return None
    return match_answer(answer, aliases) is not None


# -------------------------------------------------------------------------------------------------- auto probes

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,\s*\d{{4}})?|\d{{1,2}}\s+(?:{_MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:{_MONTHS})\s+\d{{4}})\b"
)
_UNIT = r"(?:\s?%|\s(?:percent|times|[kKMGTP]i?B|[kMGT]bps|[kMG]Hz|ms|hours|days|years|minutes|seconds)\b)"
# A free-standing number (not part of "p5.48xlarge", "H100" or "3rd"), with a unit when one follows.
_NUMBER = re.compile(rf"(?<![\w.\-])\d+(?:[.,]\d+)*(?![\w.]\w|\w){_UNIT}?")
_NAME_WORD = r"[A-Z][\w.\-]*[\w]|[A-Z]"
_NAME = re.compile(rf"(?<![\w.\-])(?:{_NAME_WORD})(?:\s(?:{_NAME_WORD}))*")
_SENTENCE_END = re.compile(r"(?:(?<=[^A-Z\s][.!?])|(?<=[A-Z]{2}[.!?]))\s+(?=[\"'(\[]?[A-Z0-9])")
MIN_PREFIX_WORDS = 3
MAX_SENTENCE_WORDS = 60
MAX_NAME_WORDS = 3


def _held_out_span(sentence: str) -> tuple[int, str] | None:
    """Where to cut a sentence into prompt and answer: the first date or number, else the first name, that has
    at least MIN_PREFIX_WORDS words before it and does not already appear in that prefix."""

    def usable(start: int, span: str) -> bool:
        prefix = sentence[:start]
        return len(prefix.split()) >= MIN_PREFIX_WORDS and match_answer(prefix, [span]) is None

    dates = [(m.start(), m.end(), m.group()) for m in _DATE.finditer(sentence)]
    numeric = [(start, span) for start, _, span in dates]
    numeric += [
        (m.start(), m.group()) for m in _NUMBER.finditer(sentence) if not any(s <= m.start() < e for s, e, _ in dates)
    ]
    for start, span in sorted(numeric):
        if usable(start, span):
            return start, span
    for m in _NAME.finditer(sentence):
        words = m.group().split()
        span = " ".join(words if len(words) <= MAX_NAME_WORDS else words[:2]).rstrip(".")
        # One plain capitalized word ("AI", "Bedrock", "APIs") is too easy to guess or too vague to test.
        specific = len(span.split()) >= 2 or bool(re.search(r"\d|[a-z][A-Z]", span))
        if specific and usable(m.start(), span):
            return m.start(), span
    return None


def auto_probes(texts: list[str], limit: int) -> list[Probe]:
    """Completion probes cut from documents: a sentence's prefix is the prompt, the held-out date, number or
    name is the answer, the paragraph is the source passage. Deterministic; taken round-robin across documents
    (sentences with dates or numbers first, then in reading order) so one long page does not fill the quota."""
    per_doc: list[list[tuple[int, int, Probe]]] = []
    seen: set[str] = set()
    for d, text in enumerate(texts):
        found: list[tuple[int, int, Probe]] = []
        s_index = 0
        for paragraph in re.split(r"\n\s*\n", text or ""):
            paragraph = " ".join(paragraph.split())
            for sentence in _SENTENCE_END.split(paragraph):
                s_index += 1
                if not sentence.endswith((".", "!", "?")) or len(sentence.split()) > MAX_SENTENCE_WORDS:
                    continue  # headings, list fragments, run-on text
                cut = _held_out_span(sentence)
                if cut is None:
                    continue
                start, span = cut
                prompt = sentence[:start].rstrip()
                if prompt in seen:
                    continue
                seen.add(prompt)
                numeric = span[0].isdigit() or bool(_DATE.fullmatch(span))
                probe = Probe(
                    id=f"auto-{d + 1}-{s_index}",
                    kind="knowledge",
                    prompt=prompt,
                    answers=[span],
                    source_passage=paragraph,
                    origin="auto",
                )
                found.append((0 if numeric else 1, s_index, probe))
        per_doc.append([p for *_, p in sorted(found, key=lambda t: t[:2])])
    chosen: list[Probe] = []
    for rank in range(max((len(c) for c in per_doc), default=0)):
        for candidates in per_doc:
            if rank < len(candidates) and len(chosen) < limit:
                chosen.append(candidates[rank])
    return chosen


def corpus_texts(run_dir: Path) -> list[str]:
    """The documents of the run's corpus (``corpus/``, column ``text``)."""
    from datasets import load_from_disk

    corpus = run_dir / runs.CORPUS
    if not corpus.is_dir():
        raise EvalError(f"{run_dir} has no {runs.CORPUS}/ to build probes from: give a probe file or run prepare")
    return list(load_from_disk(str(corpus))["text"])


# ------------------------------------------------------------------------------------------------------ report


@dataclass
class Scores:
    """One side's scores (base or adapter). Accuracies and rates are None when nothing could be scored."""

    knowledge_accuracy: float | None
    retention_accuracy: float | None
    knowledge_logprob: float | None  # mean over probes of the best alias's mean per-token log-prob
    retention_logprob: float | None
    eos_rate: float | None  # share of chat answers that ended their turn within max_new_tokens
    knowledge_correct: int = 0
    knowledge_scored: int = 0
    retention_correct: int = 0
    retention_scored: int = 0
    chat_answers: int = 0
    chat_ended: int = 0


@dataclass
class Forgetting:
    """What training cost on general data: KL over the base's own chat answers, perplexity on general text."""

    kl_mean: float
    ppl_ratio: float
    kl_max: float
    kl_per_prompt: dict[str, float]
    kl_tokens: int
    base_ppl: float
    adapter_ppl: float
    ppl_tokens: int


@dataclass
class EvalReport:
    """Everything ``eval.json`` holds; ``adapter`` and ``forgetting`` are None for a run without an adapter."""

    run_dir: str
    model: str
    has_adapter: bool
    base: Scores
    adapter: Scores | None
    forgetting: Forgetting | None
    probes: list[dict[str, Any]]
    settings: dict[str, Any]
    timings: dict[str, float]
    note: str | None = None
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "model": self.model,
            "has_adapter": self.has_adapter,
            "note": self.note,
            "created_at": self.created_at,
            "base": asdict(self.base),
            "adapter": asdict(self.adapter) if self.adapter else None,
            "forgetting": asdict(self.forgetting) if self.forgetting else None,
            "settings": self.settings,
            "timings": self.timings,
            "probes": self.probes,
        }


# ---------------------------------------------------------------------------------------------- model scoring


def _form(probe: Probe, chat_model: bool) -> str:
    """chat (question through the chat template), completion (raw prompt), or plain (question as raw text)."""
    if probe.question and chat_model:
        return "chat"
    if probe.prompt:
        return "completion"
    return "plain"


def _context_ids(tokenizer: Any, probe: Probe, form: str) -> list[int]:
    from .generate import chat_input_ids

    if form == "completion":
        return tokenizer(probe.prompt)["input_ids"]
    return chat_input_ids(tokenizer, [{"role": "user", "content": probe.question}])[0].tolist()


def _generate(model: Any, tokenizer: Any, ids: list[int], gen: GenerationConfig, seed: int) -> tuple[list[int], bool]:
    import torch

    from .generate import generate_ids

    if not gen.greedy:
        torch.manual_seed(seed)
    return generate_ids(model, tokenizer, torch.tensor([ids]), gen)


def _logits(model: Any, ids: list[int], double: bool = True):
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0]
    return logits.double() if double else logits.float()


def answer_logprob(model: Any, context: list[int], answer: list[int]) -> float:
    """Mean per-token log-probability of ``answer`` after ``context`` (teacher-forced)."""
    import torch

    logp = torch.log_softmax(_logits(model, context + answer)[len(context) - 1 : -1], dim=-1)
    target = torch.tensor(answer, device=logp.device)[:, None]
    return logp.gather(1, target).mean().item()


def _best_logprob(model: Any, tokenizer: Any, context: list[int], probe: Probe, form: str) -> float:
    """The best alias's mean per-token log-prob. In chat form a probe's completion prompt, when it has one, is
    teacher-forced as the start of the assistant's answer: a bare alias as an answer's first word ("H100") is
    unlikely under any fluent model, and an adapter that learnt to answer in full sentences would score lower."""
    lead = ""
    if form == "completion":
        lead = " "  # the alias continues the sentence
    elif probe.prompt:
        context = context + tokenizer(probe.prompt, add_special_tokens=False)["input_ids"]
        lead = " "
    return max(
        answer_logprob(model, context, tokenizer(lead + a, add_special_tokens=False)["input_ids"])
        for a in probe.answers
    )


def _kl_per_token(model: Any, base_off: Any, ids: list[int], start: int):
    """KL(base || adapter) of the next-token distributions at every position that predicts ids[start:]."""
    import torch

    with base_off():
        base = torch.log_softmax(_logits(model, ids)[start - 1 : -1], dim=-1)
    adapted = torch.log_softmax(_logits(model, ids)[start - 1 : -1], dim=-1)
    return (base.exp() * (base - adapted)).sum(-1)


def _nll(model: Any, ids: list[int], chunk: int) -> tuple[float, int]:
    """Summed negative log-likelihood of a token stream in non-overlapping windows of ``chunk`` tokens."""
    import torch

    total, count = 0.0, 0
    for start in range(0, len(ids), chunk):
        piece = ids[start : start + chunk]
        if len(piece) < 2:
            break
        logits = _logits(model, piece, double=False)[:-1]
        target = torch.tensor(piece[1:], device=logits.device)
        total += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        count += len(piece) - 1
    return total, count


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _scores(results: list[dict[str, Any]], side: str) -> Scores:
    def correct(kind: str) -> list[bool]:
        return [r[f"{side}_correct"] for r in results if r["kind"] == kind and r[f"{side}_correct"] is not None]

    def logprobs(kind: str) -> list[float]:
        return [r[f"{side}_logprob"] for r in results if r["kind"] == kind and r[f"{side}_logprob"] is not None]

    chat = [r[f"{side}_eos"] for r in results if r["form"] == "chat"]
    know, ret = correct("knowledge"), correct("retention")
    return Scores(
        knowledge_accuracy=_mean([float(c) for c in know]),
        retention_accuracy=_mean([float(c) for c in ret]),
        knowledge_logprob=_mean(logprobs("knowledge")),
        retention_logprob=_mean(logprobs("retention")),
        eos_rate=_mean([float(e) for e in chat]),
        knowledge_correct=sum(know),
        knowledge_scored=len(know),
        retention_correct=sum(ret),
        retention_scored=len(ret),
        chat_answers=len(chat),
        chat_ended=sum(chat),
    )


# ------------------------------------------------------------------------------------------------------ the verb


def collect_probes(run_dir: Path, config: EvalConfig, progress: Progress) -> tuple[list[Probe], str]:
    """The probes to answer and where they came from: the probe file, or automatic ones from the corpus; plus
    the shipped retention probes unless turned off."""
    if config.probes:
        probes, source = load_probes(config.probes), f"file {config.probes}"
    elif config.auto_probes:
        probes = auto_probes(corpus_texts(run_dir), config.auto_probes)
        source = f"{len(probes)} automatic from the corpus"
        if len(probes) < config.auto_probes:
            progress.log(f"the corpus gave {len(probes)} of the {config.auto_probes} automatic probes asked for")
    else:
        probes, source = [], "none"
    if config.retention:
        taken = {p.id for p in probes}
        probes += [p for p in shipped_retention_probes() if p.id not in taken]
        source += " + shipped retention probes"
    probes.sort(key=lambda p: KINDS.index(p.kind))  # knowledge first, stable within a kind
    return probes, source


def evaluate(run_dir: str | Path, config: EvalConfig | None = None, progress: Progress | None = None) -> EvalReport:
    """Answer the probes with the base and the adapter, measure forgetting, write eval.json/.md/.png.

    A run without an adapter is evaluated on the base alone (``adapter`` and ``forgetting`` null, ``note`` says so).
    ``progress.should_stop()`` is checked between answers; a stop raises ``EvalStopped`` and writes nothing.
    """
    from .generate import load_for_run
    from .models import context_length
    from .train import read_adapter_meta

    run_dir = Path(run_dir)
    config = config or EvalConfig()
    progress = progress or Progress()
    runs.read_config(run_dir)  # a clear error for a folder that is not a run
    started = time.time()
    probes, source = collect_probes(run_dir, config, progress)
    adapter_dir = run_dir / runs.ADAPTER
    has_adapter = (adapter_dir / "adapter_config.json").is_file()
    forgetting_on = config.forgetting and has_adapter
    prompts = general_prompts() if forgetting_on else []
    if not probes and not forgetting_on:
        raise EvalError(
            "nothing to evaluate: no probes (give --probes, --auto-probes or keep retention) and no forgetting"
        )
    note = None
    if not has_adapter:
        note = f"no adapter in this run (no {runs.ADAPTER}/adapter_config.json): the base model was evaluated alone"

    progress.start("load model", total=None)
    loaded = load_for_run(run_dir, with_adapter=has_adapter, progress=progress)
    progress.finish()
    model, tok = loaded.model, loaded.tokenizer
    chat_model = bool(getattr(tok, "chat_template", None))
    sides = ("base", "adapter") if has_adapter else ("base",)

    def as_side(side: str):
        return loaded.adapter_disabled() if side == "base" else contextlib.nullcontext()

    timings = {"load_s": time.time() - started}
    t0 = time.time()
    gen = config.generation
    progress.start("evaluate", total=len(probes) * len(sides) + len(prompts), unit="answer")
    results: list[dict[str, Any]] = []
    for i, probe in enumerate(probes):
        form = _form(probe, chat_model)
        context = _context_ids(tok, probe, form)
        row: dict[str, Any] = {
            "id": probe.id,
            "kind": probe.kind,
            "origin": probe.origin,
            "form": form,
            "question": probe.question,
            "prompt": probe.prompt,
            "answers": probe.answers,
        }
        for side in ("base", "adapter"):
            row.update({f"{side}_answer": None, f"{side}_correct": None, f"{side}_eos": None, f"{side}_logprob": None})
        for side in sides:
            if progress.should_stop():
                raise EvalStopped("evaluation stopped before all probes were answered; nothing was written")
            with as_side(side):
                new, ended = _generate(model, tok, context, gen, SAMPLING_SEED + i)
                text = tok.decode(new, skip_special_tokens=True).strip()
                row[f"{side}_answer"], row[f"{side}_eos"] = text, ended
                row[f"{side}_correct"] = is_correct(text, probe.answers)
                if probe.answers:
                    row[f"{side}_logprob"] = _best_logprob(model, tok, context, probe, form)
            progress.advance(1, probe=probe.id, side=side)
        row["source_passage"] = probe.source_passage
        results.append(row)
    timings["probes_s"] = time.time() - t0

    forgetting = None
    if forgetting_on:
        t0 = time.time()
        chunk = min(context_length(model.config) or PPL_MAX_CHUNK, PPL_MAX_CHUNK)
        forgetting = _forgetting(loaded, prompts, config.kl_max_new_tokens, chunk, progress)
        timings["forgetting_s"] = time.time() - t0
    progress.finish()
    timings["total_s"] = time.time() - started

    meta = read_adapter_meta(adapter_dir) if has_adapter else {}
    settings = {
        "generation": to_dict(gen),
        "greedy": gen.greedy,
        "probes": source,
        "probe_file": config.probes,
        "auto_probes": config.auto_probes,
        "retention": config.retention,
        "forgetting": config.forgetting,
        "kl_max_new_tokens": config.kl_max_new_tokens,
        "chat_template": chat_model,
        "adapter_status": meta.get("status"),
        "adapter_step": meta.get("step"),
        "counts": {kind: sum(p.kind == kind for p in probes) for kind in KINDS},
    }
    report = EvalReport(
        run_dir=str(run_dir),
        model=loaded.model_name,
        has_adapter=has_adapter,
        base=_scores(results, "base"),
        adapter=_scores(results, "adapter") if has_adapter else None,
        forgetting=forgetting,
        probes=results,
        settings=settings,
        timings={k: round(v, 2) for k, v in timings.items()},
        note=note,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    runs.update_config(run_dir, "eval", to_dict(config))
    write_report(report, run_dir)
    return report


def _forgetting(loaded: Any, prompts: list[dict[str, str]], kl_tokens: int, chunk: int, progress: Progress):
    from .generate import chat_input_ids

    model, tok = loaded.model, loaded.tokenizer
    greedy = GenerationConfig(max_new_tokens=kl_tokens, temperature=0.0)
    per_prompt: dict[str, float] = {}
    n_tokens = 0
    for p in prompts:
        if progress.should_stop():
            raise EvalStopped("evaluation stopped while measuring forgetting; nothing was written")
        context = chat_input_ids(tok, [{"role": "user", "content": p["prompt"]}])[0].tolist()
        with loaded.adapter_disabled():
            new, ended = _generate(model, tok, context, greedy, SAMPLING_SEED)
        target = new + ([tok.eos_token_id] if ended else [])  # ending the turn is part of the behaviour
        if target:
            kl = _kl_per_token(model, loaded.adapter_disabled, context + target, len(context))
            per_prompt[p["id"]] = max(kl.mean().item(), 0.0)  # rounding can leave -1e-17
            n_tokens += len(target)
        progress.advance(1, prompt=p["id"])
    ids = tok(general_text(), verbose=False)["input_ids"]  # longer than the context on purpose: it is chunked
    with loaded.adapter_disabled():
        base_nll, count = _nll(model, ids, chunk)
    adapter_nll, _ = _nll(model, ids, chunk)
    return Forgetting(
        kl_mean=_mean(list(per_prompt.values())) or 0.0,
        ppl_ratio=math.exp((adapter_nll - base_nll) / count),
        kl_max=max(per_prompt.values(), default=0.0),
        kl_per_prompt=per_prompt,
        kl_tokens=n_tokens,
        base_ppl=math.exp(base_nll / count),
        adapter_ppl=math.exp(adapter_nll / count),
        ppl_tokens=count,
    )


# ------------------------------------------------------------------------------------------------------ writing

SCORE_ROWS = ("knowledge_accuracy", "retention_accuracy", "knowledge_logprob", "retention_logprob", "eos_rate")
FORGETTING_ROWS = ("kl_mean", "ppl_ratio", "kl_max", "base_ppl", "adapter_ppl")
_COUNTS = {
    "knowledge_accuracy": ("knowledge_correct", "knowledge_scored"),
    "retention_accuracy": ("retention_correct", "retention_scored"),
    "eos_rate": ("chat_ended", "chat_answers"),
}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _cell(scores: Scores | None, key: str) -> str:
    if scores is None:
        return "n/a"
    value = getattr(scores, key)
    if key in _COUNTS and value is not None:
        hit, n = (getattr(scores, k) for k in _COUNTS[key])
        return f"{_num(value)} ({hit}/{n})"
    return _num(value)


def format_table(report: EvalReport) -> str:
    """The scores as an aligned plain-text table (what the CLI prints)."""
    rows = [("metric", "base", "adapter")]
    rows += [(key, _cell(report.base, key), _cell(report.adapter, key)) for key in SCORE_ROWS]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}" for r in rows]
    if report.forgetting:
        lines.append("")
        lines += [f"{key:<{width[0]}}  {_num(getattr(report.forgetting, key)):>{width[1]}}" for key in FORGETTING_ROWS]
    if report.note:
        lines += ["", f"note: {report.note}"]
    return "\n".join(lines)


def _md_text(text: str | None, limit: int = 400) -> str:
    if text is None:
        return ""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _mark(correct: bool | None) -> str:
    return {True: "✓", False: "✗", None: "–"}[correct]


def format_markdown(report: EvalReport) -> str:
    """``eval.md``: the score table, forgetting, and every probe's answers side by side."""
    s = report.settings
    g = s["generation"]
    decoding = "greedy" if s["greedy"] else f"temperature {g['temperature']}, top_p {g['top_p']}"
    if not report.has_adapter:
        adapter = "no adapter"
    elif s["adapter_step"] is None:
        adapter = f"adapter from {runs.ADAPTER}/"
    else:
        adapter = f"adapter at step {s['adapter_step']} ({s['adapter_status']})"
    lines = [
        f"# Evaluation of `{Path(report.run_dir).name}`",
        "",
        f"Model `{report.model}`, {adapter}. Probes: {s['probes']} ({s['counts']['knowledge']} knowledge, "
        f"{s['counts']['retention']} retention). Decoding: {decoding}, max_new_tokens {g['max_new_tokens']}. "
        f"{report.created_at}, {report.timings.get('total_s', 0):.0f} s.",
        "",
    ]
    if report.note:
        lines += [f"> {report.note}", ""]
    lines += ["| metric | base | adapter |", "|---|---:|---:|"]
    lines += [f"| {key} | {_cell(report.base, key)} | {_cell(report.adapter, key)} |" for key in SCORE_ROWS]
    lines += [
        "",
        "Accuracy: the answer contains an accepted alias. Log-prob: mean per-token log-probability of the best "
        "accepted answer, teacher-forced after the question (with the probe's prompt as the answer's start when it "
        "has one); closer to 0 is better. eos_rate: share of chat answers that ended their turn within "
        "max_new_tokens.",
    ]
    if report.forgetting:
        f = report.forgetting
        lines += ["", "| forgetting | value |", "|---|---:|"]
        lines += [f"| {key} | {_num(getattr(f, key))} |" for key in FORGETTING_ROWS]
        lines += [
            "",
            f"KL(base ‖ adapter) averaged over {f.kl_tokens} tokens of the base model's own answers to "
            f"{len(f.kl_per_prompt)} general prompts; perplexities on {f.ppl_tokens} tokens of general text.",
        ]
    lines += [
        "",
        "## Answers",
        "",
        "| id | kind | question or prompt | accepted | base | | adapter | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report.probes:
        asked = r["question"] if r["form"] != "completion" else f"{r['prompt']} …"
        lines.append(
            f"| {_md_text(r['id'])} | {r['kind']} | {_md_text(asked)} | {_md_text(' / '.join(r['answers']))} "
            f"| {_md_text(r['base_answer'])} | {_mark(r['base_correct'])} "
            f"| {_md_text(r['adapter_answer'])} | {_mark(r['adapter_correct'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_report(report: EvalReport, path: Path) -> None:
    """``eval.png``: accuracy bars base vs adapter, and the two forgetting numbers (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    acc, kl, ppl = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2, 1, 1]})
    labels = ["knowledge", "retention"]
    sides = [("base", report.base, "#8c8c8c")]
    if report.adapter:
        sides.append(("adapter", report.adapter, "#2a7ab9"))
    width = 0.8 / len(sides)
    for k, (name, scores, color) in enumerate(sides):
        values = [scores.knowledge_accuracy, scores.retention_accuracy]
        xs = [i + (k - (len(sides) - 1) / 2) * width for i in range(len(labels))]
        bars = acc.bar(xs, [v or 0.0 for v in values], width, label=name, color=color)
        for bar, v in zip(bars, values, strict=True):
            acc.annotate(_num(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    acc.set_xticks(range(len(labels)), labels)
    acc.set_ylim(0, 1.3)
    acc.set_ylabel("accuracy")
    acc.set_title("probe accuracy")
    acc.legend(loc="upper center", ncol=2, frameon=False)
    f = report.forgetting
    for ax, title, value, ref in (
        (kl, "KL(base ‖ adapter)", f and f.kl_mean, 0.0),
        (ppl, "perplexity ratio", f and f.ppl_ratio, 1.0),
    ):
        ax.set_title(title)
        ax.set_xticks([])
        if value is None:
            ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.bar([0], [value], 0.5, color="#c0504d")
        ax.axhline(ref, color="black", linewidth=0.8, linestyle="--")
        ax.annotate(_num(value), (0, value), ha="center", va="bottom")
        ax.set_xlim(-1, 1)
        ax.set_ylim(min(0.0, value) * 1.2, max(value * 1.25, ref * 1.25, 1e-6))
    fig.suptitle(f"{Path(report.run_dir).name}: base vs adapter", fontsize=10)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_report(report: EvalReport, run_dir: str | Path) -> None:
    """Write eval.png, eval.md and, last, eval.json (each atomically: readers see the old file or the new one)."""
    run_dir = Path(run_dir)
    plot_report(report, run_dir / EVAL_PNG)
    runs.atomic_write_text(run_dir / EVAL_MD, format_markdown(report))
    runs.atomic_write_json(run_dir / runs.EVAL_JSON, report.to_dict())


def read_report(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``eval.json`` as a dict, or None when it has not been evaluated."""
    path = Path(run_dir) / runs.EVAL_JSON
    return runs.read_json(path) if path.is_file() else None
