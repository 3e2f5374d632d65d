"""The bench test sets (bench/data/*): probe files parse; each probe asks, in its own words, a fact its pages state."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kinject.augment.matching import is_correct, match_answer, normalize_answer
from kinject.eval.probes import load_probes

BENCH_DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
SETS = sorted(p.parent for p in BENCH_DATA.glob("*/probes.jsonl"))
MAX_SHARED_RUN = 4  # a question may share at most this many consecutive words with its pages
MIN_WRONG_PROBES = 6


def _pages(folder: Path) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md")) if p.name != "README.md"]


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:['.][^\W_]+)*", normalize_answer(text))


def _runs(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _cases() -> list[tuple[Path, object]]:
    return [(folder, probe) for folder in SETS for probe in load_probes(folder / "probes.jsonl")]


def test_sets_present():
    assert {p.name for p in SETS} >= {"holdout", "announcement", "lookalikes", "dev"}
    for folder in SETS:
        assert (folder / "README.md").is_file(), folder
        assert _pages(folder), f"{folder.name}: no pages"


def test_probes_parse_unique_knowledge_with_answers():
    seen: dict[str, str] = {}
    for folder in SETS:
        for probe in load_probes(folder / "probes.jsonl"):
            assert probe.id not in seen, f"{probe.id} in {folder.name} repeats one of {seen[probe.id]}"
            seen[probe.id] = folder.name
            assert probe.kind == "knowledge", probe.id
            assert probe.question, probe.id
            assert probe.answers, probe.id


@pytest.mark.parametrize(("folder", "probe"), _cases(), ids=lambda v: getattr(v, "id", getattr(v, "name", "")))
def test_answer_on_pages_question_in_other_words(folder, probe):
    pages = _pages(folder)
    assert any(match_answer(page, probe.answers) for page in pages), f"{probe.id}: no accepted answer on the pages"
    page_runs = set().union(*(_runs(_words(page), MAX_SHARED_RUN + 1) for page in pages))
    shared = _runs(_words(probe.question), MAX_SHARED_RUN + 1) & page_runs
    assert not shared, f"{probe.id}: question copies the pages: {' '.join(sorted(shared)[0])!r}"


def test_lookalike_wrong_values_rejected():
    folder = BENCH_DATA / "lookalikes"
    wrong = json.loads((folder / "wrong.json").read_text(encoding="utf-8"))
    probes = {p.id: p for p in load_probes(folder / "probes.jsonl")}
    assert set(wrong) <= set(probes), set(wrong) - set(probes)
    assert sum(1 for values in wrong.values() if values) >= MIN_WRONG_PROBES
    pages = " ".join(_pages(folder))
    for pid, values in wrong.items():
        for value in values:
            assert match_answer(pages, [value]), f"{pid}: look-alike {value!r} is not on the pages"
            assert is_correct(value, probes[pid].answers) is False, f"{pid}: accepts the look-alike {value!r}"
