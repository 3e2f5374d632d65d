"""Which question-answer and replay rows a training packs, and in which order."""

from __future__ import annotations

import random
from typing import Any


def balanced(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Question-answer rows with each fact's questions repeated, in turn, up to the most-asked fact's count (rows
    about no single fact, a template's, once each)."""
    by_fact: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_fact.setdefault((row.get("passage", ""), row.get("fact") or f"\x00{id(row)}"), []).append(row)
    most = max((len(group) for key, group in by_fact.items() if not key[1].startswith("\x00")), default=0)
    out = []
    for (_, fact), group in by_fact.items():
        count = len(group) if fact.startswith("\x00") else most
        out += [group[i % len(group)] for i in range(count)]
    return out


def spread_forms(rows: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Replay rows in an order that takes each question form in turn (its first word: "Who", "How", "Write"...),
    each form's rows shuffled: a run that replays only a few (one page) still replays every form, so no form of
    question ("Who wrote ...?") is left to the page's answers alone."""
    forms: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        words = row["question"].split(maxsplit=1)
        forms.setdefault(words[0].lower() if words else "", []).append(row)
    groups = sorted(forms.values(), key=len, reverse=True)
    for group in groups:
        rng.shuffle(group)
    return [group[k] for k in range(len(groups[0])) for group in groups if k < len(group)]
