"""The user's own question-answer pairs: read from a JSONL or CSV file, checked against the pages, trained beside the
generated ones.

A file the user wrote is the surest training data there is (and the oracle a generated set is measured against), so
it is refused only when it cannot be read as question-answer pairs, with the file and line that is wrong; an answer
the pages do not support is kept and named in a warning (the user may know better than the page).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..runtime.errors import KinjectError
from .filters import unsupported_terms

MAX_FILE_BYTES = 5_000_000
MAX_ROWS = 20_000
MAX_FIELD_CHARS = 2_000
FIELDS = ("question", "answer", "source")


class QuestionFileError(KinjectError, ValueError):
    """A question file that cannot be used; the message names the file and, where one is at fault, the line."""


def read_question_file(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a question file: JSONL (one object a line) or CSV (a header naming ``question`` and ``answer``,
    optionally ``source``), told apart by the file's suffix (.csv) or, failing that, its first character."""
    path = Path(path)
    try:
        if not path.is_file():
            raise QuestionFileError(f"{path}: no such file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise QuestionFileError(f"{path}: {size:,} bytes, over the {MAX_FILE_BYTES:,} a question file may have")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QuestionFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise QuestionFileError(f"{path}: {exc.strerror or exc}") from None
    as_csv = path.suffix.lower() == ".csv" or (path.suffix.lower() not in (".jsonl", ".json") and _looks_csv(text))
    rows = _csv_rows(path, text) if as_csv else _jsonl_rows(path, text)
    if not rows:
        raise QuestionFileError(f"{path}: no question-answer pairs in it")
    if len(rows) > MAX_ROWS:
        raise QuestionFileError(f"{path}: {len(rows):,} pairs, over the {MAX_ROWS:,} a question file may hold")
    return rows


def _looks_csv(text: str) -> bool:
    return not text.lstrip().startswith("{")


def _jsonl_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(data, dict):
            raise QuestionFileError(f"{path}:{number}: a JSON object with question and answer expected")
        rows.append(_row(path, number, data))
    return rows


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [f for f in ("question", "answer") if f not in header]
    if missing:
        raise QuestionFileError(
            f"{path}:1: the CSV header must name question and answer (missing {', '.join(missing)})"
        )
    reader.fieldnames = header
    rows = []
    try:
        for data in reader:
            if not any((v or "").strip() for k, v in data.items() if k):
                continue
            if None in data:  # more cells than the header names
                raise QuestionFileError(f"{path}:{reader.line_num}: more cells than the header names")
            rows.append(_row(path, reader.line_num, data))
    except csv.Error as exc:
        raise QuestionFileError(f"{path}:{reader.line_num}: {exc}") from None
    return rows


def _row(path: Path, number: int, data: dict[str, Any]) -> dict[str, Any]:
    """One checked pair: question and answer non-empty strings, ``source`` optional."""
    row = {}
    for name in FIELDS:
        value = data.get(name)
        if value is None and name == "source":
            value = ""
        if not isinstance(value, str):
            kind = "missing" if value is None else f"a {type(value).__name__}, not text"
            raise QuestionFileError(f"{path}:{number}: {name} is {kind}")
        value = " ".join(value.split())
        if name != "source" and not value:
            raise QuestionFileError(f"{path}:{number}: {name} is empty")
        if len(value) > MAX_FIELD_CHARS:
            raise QuestionFileError(f"{path}:{number}: {name} is over {MAX_FIELD_CHARS} characters")
        row[name] = value
    row["line"] = number
    row["file"] = path.name
    return row


def check_support(rows: list[dict[str, Any]], documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with a ``warning`` where the answer states a number or name the pages do not (its source's page when
    the row names one that is in the corpus, else any page): kept, but named. Wording is the user's own."""
    by_source = {Path(d.get("source", "")).name: d["text"] for d in documents}
    everything = "\n\n".join(d["text"] for d in documents)
    checked = []
    for row in rows:
        page = by_source.get(Path(row.get("source") or "").name, everything)
        problem = unsupported_terms(row["answer"], page)
        checked.append({**row, "warning": f"the answer {problem}" if problem else ""})
    return checked


def read_questions(paths: list[str], documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair of every file in ``paths``, checked against the corpus ``documents``."""
    rows = [row for path in paths for row in read_question_file(path)]
    return check_support(rows, documents)


def user_rows(run: Any) -> list[dict[str, Any]]:
    """The run's user questions as question-answer rows of the augmentation (origin ``user``)."""
    return [
        {
            "kind": "qa",
            "origin": "user",
            "passage": "",
            "source": r.get("source", ""),
            "sentence": r["answer"],
            "fact": "",
            "question": r["question"],
            "answer": r["answer"],
            "kept": True,
            "reason": "",
            "warning": r.get("warning", ""),
        }
        for r in run.read_user_questions()
    ]
