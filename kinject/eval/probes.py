"""Probes: the questions evaluation asks (probe files, automatic probes cut from the corpus, shipped data).

A knowledge probe checks a fact of the run's pages, a retention probe a general fact or chat behaviour the base
model already has. A probe has a chat ``question``, a completion ``prompt`` or both, and accepted ``answers``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..augment.facts import DATE, name_spans, numeric_spans, sentences
from ..augment.matching import match_answer
from ..runs import RunDir, RunError, read_jsonl
from ..runtime.errors import KinjectError
from ..runtime.progress import Progress
from ..settings.places import SHIPPED
from ..settings.stages import EvalConfig

RETENTION_PROBES = SHIPPED / "retention_probes.jsonl"
GENERAL_PROMPTS = SHIPPED / "general_prompts.jsonl"
GENERAL_TEXT = SHIPPED / "general_text.txt"

KINDS = ("knowledge", "retention")
PROBE_FIELDS = ("id", "kind", "question", "prompt", "answers", "source_passage")


class EvalError(KinjectError, RuntimeError):
    """Evaluation cannot run; the message says why and what to do."""


class EvalStopped(EvalError):
    """The user asked to stop; ``answers`` holds what was scored before the stop (``score_probes``)."""

    def __init__(self, message: str, answers: list[Any] | None = None):
        super().__init__(message)
        self.answers = answers or []


class ProbeError(EvalError):
    """A probe file is malformed; the message names the file, line and field."""


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
    return read_jsonl(GENERAL_PROMPTS)


def general_text() -> str:
    """The general text sample (written for kinject) on which the perplexity ratio is measured."""
    return GENERAL_TEXT.read_text(encoding="utf-8")


MIN_PREFIX_WORDS = 3
MAX_SENTENCE_WORDS = 60


def _held_out_span(sentence: str) -> tuple[int, str] | None:
    """Where to cut a sentence into prompt and answer: the first date or number, else the first name, that has
    at least MIN_PREFIX_WORDS words before it and does not already appear in that prefix."""

    def usable(start: int, span: str) -> bool:
        prefix = sentence[:start]
        return len(prefix.split()) >= MIN_PREFIX_WORDS and match_answer(prefix, [span]) is None

    for span in numeric_spans(sentence):
        if usable(span.start, span.text):
            return span.start, span.text
    for span in name_spans(sentence, strip_openers=False):
        if usable(span.start, span.text):
            return span.start, span.text
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
            for sentence in sentences(paragraph):
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
                numeric = span[0].isdigit() or bool(DATE.fullmatch(span))
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


def corpus_texts(run: RunDir) -> list[str]:
    """The documents of the run's corpus (column ``text``)."""
    try:
        return list(run.load_corpus()["text"])
    except RunError as exc:
        raise EvalError(f"{exc}; or give a probe file") from None


def collect_probes(run: RunDir, config: EvalConfig, progress: Progress | None = None) -> tuple[list[Probe], str]:
    """The probes to answer and where they came from: the probe file, or automatic ones from the corpus; plus
    the shipped retention probes unless turned off."""
    progress = progress or Progress()
    if config.probes:
        probes, source = load_probes(config.probes), f"file {config.probes}"
    elif config.auto_probes:
        probes = auto_probes(corpus_texts(run), config.auto_probes)
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
