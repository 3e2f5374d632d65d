"""Checks of an evaluation's report files, shared by the tests of tiny runs and of the trained P5 run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kinject.runs import RunDir


def _parse_md_scores(text: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("## Answers"):
            break
        if len(cells) >= 2 and re.fullmatch(r"[a-z_]+", cells[0]) and cells[0] not in ("metric", "forgetting"):
            rows[cells[0]] = cells[1:]
    return rows


def _md_value(cell: str) -> float | None:
    token = cell.split()[0]
    return None if token == "n/a" else float(token)


def assert_report_files_agree(run_dir: Path) -> dict:
    """eval.json, eval.md and eval.png exist, and every number in eval.md's tables is eval.json's."""
    run = RunDir(run_dir)
    data = run.read_eval()
    assert run.eval_plot().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = run.eval_markdown()
    rows = _parse_md_scores(md)
    for key in ("knowledge_accuracy", "retention_accuracy", "knowledge_logprob", "retention_logprob", "eos_rate"):
        for side, cell in zip(("base", "adapter"), rows[key], strict=True):
            expected = data[side][key] if data[side] else None
            got = _md_value(cell)
            assert (got is None) == (expected is None), (key, side, cell, expected)
            if got is not None:
                assert got == pytest.approx(expected, rel=1e-3, abs=1e-9), (key, side)
    for side, cell in zip(("base", "adapter"), rows["chat_looping"], strict=True):
        assert cell == (f"{data[side]['chat_looping']}/{data[side]['chat_answers']}" if data[side] else "n/a")
    if data["forgetting"]:
        for key in ("kl_mean", "ppl_ratio"):
            assert _md_value(rows[key][0]) == pytest.approx(data["forgetting"][key], rel=1e-3, abs=1e-9), key
    for probe in data["probes"]:
        assert f"| {probe['id']} |" in md
    return data
