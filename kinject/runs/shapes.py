"""The shapes of a run's JSON files, checked once where they are read.

A file that parses but holds the wrong shape (``status.json`` holding ``"done"``, a score that is text) would
otherwise fail later as Python's own TypeError or AttributeError in whatever shows it, and take the Runs table down
with it. Each reader checks its file against a spec here and raises ``RunDamagedError`` naming the file and field.

A spec is a leaf ``Kind`` (``TEXT``, ``INT``, ...), ``Opt(spec)`` (null allowed), ``Each(spec)`` (a list of),
``Values(spec)`` (an object whose values all are), or a dict of key -> spec for an object (``Req(spec)`` for a key
that must be present; other keys may be absent, unknown keys pass).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunDamagedError
from .files import read_json


@dataclass(frozen=True)
class Kind:
    """A leaf value: what it must be, in words, and the test of it."""

    words: str
    test: Callable[[Any], bool]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


TEXT = Kind("text", lambda v: isinstance(v, str))
NUMBER = Kind("a number", _is_number)
INT = Kind("a whole number", lambda v: _is_number(v) and (isinstance(v, int) or v.is_integer()))
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
ANY = Kind("anything", lambda v: True)


@dataclass(frozen=True)
class Opt:
    """``spec``, or null."""

    spec: Any


@dataclass(frozen=True)
class Req:
    """An object's key that must be present, holding ``spec``."""

    spec: Any


@dataclass(frozen=True)
class Each:
    """A list whose every item is ``spec``."""

    spec: Any


@dataclass(frozen=True)
class Values:
    """An object whose every value is ``spec``."""

    spec: Any


def words(spec: Any) -> str:
    """What ``spec`` asks for, as the message says it."""
    if isinstance(spec, Kind):
        return spec.words
    if isinstance(spec, Opt):
        return f"{words(spec.spec)} or null"
    if isinstance(spec, Each):
        return "a list"
    return "an object"


def shown(value: Any) -> str:
    """A value as a message shows it: text quoted and cut, containers by kind."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return json.dumps(value)


def problem(value: Any, spec: Any, where: str = "") -> tuple[str, str] | None:
    """The first place where ``value`` is not ``spec``: (field, what is wrong there), or None when it fits."""
    if isinstance(spec, Opt):
        return None if value is None else problem(value, spec.spec, where)
    fits = spec.test(value) if isinstance(spec, Kind) else isinstance(value, list if isinstance(spec, Each) else dict)
    if not fits:
        return where, f"must be {words(spec)}, got {shown(value)}"
    if isinstance(spec, Each):
        items: Any = ((f"{where}[{i}]", item, spec.spec) for i, item in enumerate(value))
    elif isinstance(spec, Values):
        items = ((_key(where, k), v, spec.spec) for k, v in value.items())
    elif isinstance(spec, dict):
        items = ((_key(where, k), value.get(k, _MISSING), s) for k, s in spec.items())
    else:
        return None
    for inner_where, inner_value, inner_spec in items:
        if inner_value is _MISSING:
            if isinstance(inner_spec, Req):
                return inner_where, "is missing"
            continue
        if found := problem(inner_value, _unwrap(inner_spec), inner_where):
            return found
    return None


_MISSING = object()  # an object's key that is absent (null is a value)


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _unwrap(spec: Any) -> Any:
    return spec.spec if isinstance(spec, Req) else spec


def damaged(path: Path, field: str, detail: str, hint: str = "") -> RunDamagedError:
    """The error for ``path``'s ``field`` (the file as a whole when ""), with what to do about it."""
    subject = field or "the file"
    message = f"{path} is damaged: {subject} {detail}" + (f" ({hint})" if hint else "")
    return RunDamagedError(message, path, field, f"{subject} {detail}")


def _unreadable(path: Path, exc: Exception, hint: str) -> RunDamagedError:
    if isinstance(exc, OSError):
        return damaged(path, "", f"cannot be read ({exc.strerror or exc})", hint)
    return damaged(path, "", f"is not valid JSON, cut off or overwritten? ({exc})", hint)


def load_json(path: Path, spec: Any, hint: str = "") -> Any:
    """The value of JSON file ``path`` checked against ``spec``; None when there is no such file."""
    try:
        value = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _unreadable(path, exc, hint) from None
    if found := problem(value, spec):
        raise damaged(path, *found, hint)
    return value


def load_jsonl(path: Path, spec: Any, hint: str = "", skip_bad: bool = False) -> list[Any]:
    """The rows of JSONL file ``path``, each checked against ``spec`` ([] when there is no such file). With
    ``skip_bad``, a line that does not parse (a write cut off by a crash) is skipped; one that parses to the wrong
    shape never is."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            lines = list(fh)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc, hint) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            if skip_bad:
                continue
            raise damaged(path, f"line {number}", f"is not valid JSON ({exc})", hint) from None
        if found := problem(row, spec):
            field, detail = found
            raise damaged(path, f"line {number}" + (f": {field}" if field else ""), detail, hint)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ the files' specs
# status.json: kinject.runtime.jobs.JobState's fields (tests/test_runs.py keeps the two in step).
STATUS = {
    **dict.fromkeys(("run_dir", "status", "kind", "phase", "phase_unit", "error", "message"), TEXT),
    **dict.fromkeys(("phase_done", "phase_total", "step", "total", "pid", "job_id"), INT),
    **dict.fromkeys(("phase_started", "epoch", "started_at", "updated_at", "pid_started"), NUMBER),
    **dict.fromkeys(("loss", "learning_rate", "tokens_per_s", "eta_s", "peak_memory_mb"), Opt(NUMBER)),
}
# One line of metrics.jsonl: a logged training step.
METRIC = {
    **dict.fromkeys(("time", "epoch", "loss", "learning_rate", "grad_norm"), NUMBER),
    **dict.fromkeys(("step", "total"), INT),
    **dict.fromkeys(("tokens_per_s", "eta_s"), Opt(NUMBER)),
}
_SCORES = {
    **dict.fromkeys(("knowledge_accuracy", "retention_accuracy", "eos_rate"), Opt(NUMBER)),
    **dict.fromkeys(("knowledge_logprob", "retention_logprob"), Opt(NUMBER)),
    **dict.fromkeys(("knowledge_correct", "knowledge_scored", "retention_correct", "retention_scored"), INT),
    **dict.fromkeys(("chat_answers", "chat_ended", "chat_looping"), INT),
}
_FORGETTING = {
    **dict.fromkeys(("kl_mean", "kl_max", "ppl_ratio", "base_ppl", "adapter_ppl"), Req(NUMBER)),
    **dict.fromkeys(("kl_tokens", "ppl_tokens"), INT),
    "kl_per_prompt": Values(NUMBER),
}
_ANSWER = {"text": TEXT, "correct": Opt(BOOL), "ended": BOOL, "logprob": Opt(NUMBER)}
_PROBE = {
    **dict.fromkeys(("id", "kind", "origin", "form"), TEXT),
    **dict.fromkeys(("question", "prompt", "source_passage"), Opt(TEXT)),
    "answers": Opt(Each(TEXT)),
    **dict.fromkeys(("base", "adapter", "open_book"), Opt(_ANSWER)),
}
_GUARD = {"learnt": Opt(BOOL), "reason": Opt(TEXT), "checks": Each({"kl": Req(NUMBER), "step": Req(INT)})}
_EVAL_SETTINGS = {
    "generation": Opt({"max_new_tokens": Req(INT)}),
    "quick": Opt(BOOL),
    "counts": Opt(Values(INT)),
    **dict.fromkeys(("adapter_step", "adapter_kept_step", "probes_planned"), Opt(INT)),
    "guard": Opt(_GUARD),
}
# eval.json (and eval-quick.json, eval-stopped.json): kinject.eval.report.EvalReport.to_dict().
EVAL = {
    **dict.fromkeys(("run_dir", "model", "created_at"), TEXT),
    **dict.fromkeys(("has_adapter", "stopped"), BOOL),
    "note": Opt(TEXT),
    "base": _SCORES,
    **dict.fromkeys(("adapter", "open_book"), Opt(_SCORES)),
    "forgetting": Opt(_FORGETTING),
    "contamination": Opt({**dict.fromkeys(("answers", "of", "names"), INT), "leaks": Values(Each(TEXT))}),
    "settings": Opt(_EVAL_SETTINGS),
    "timings": Opt(Values(NUMBER)),
    "probes": Opt(Each(_PROBE)),
}
# adapter/kinject.json: what training saved beside the adapter.
ADAPTER_META = {
    **dict.fromkeys(("status", "saved_at"), TEXT),
    **dict.fromkeys(("step", "total_steps", "kept_step"), Opt(INT)),
    "train": Opt({}),
    "guard": Opt(_GUARD),
}
# One line of sources.jsonl: an input and what became of it.
SOURCE = {
    **dict.fromkeys(("input", "kind", "status", "title", "error", "sha256", "fetched_at"), Opt(TEXT)),
    **dict.fromkeys(("chars", "tokens"), Opt(INT)),
    "bytes": Opt(INT),
}
# blocks/<key>/blocks.json and augment/<name>.json: the summaries of a cached packing and of a generated set.
BLOCKS_INFO = {"config": {}, "stats": {}}
AUGMENT_INFO = {"kind": TEXT, "key": Req(TEXT)}
