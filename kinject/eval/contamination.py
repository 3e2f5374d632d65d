"""Contamination: names of the corpus that turn up in the adapter's answers to general prompts and not in the
base's answers to the same prompts.

A forgetting that retention scores miss: an answer about a famous painting can stay right and still name a product
from the pages. The names are what a page introduces: capitalised words that do not open a sentence, runs of them
("Aurora Avionics") and a run's first word ("Aurora"; not "works" of "Castellan Works", not "Each" of "Each
Vantor node"), and codes that mix letters and digits ("K7", "p5.48xlarge"); a name the base also says in that
answer, or one the prompt itself holds, does not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .metrics import ProbeResult

_WORD = re.compile(r"[A-Za-z][\w.\-]*[\w]|[A-Za-z]")
_CODE = re.compile(r"\b(?=[\w.\-]*\d)(?=[\w.\-]*[A-Za-z])[A-Za-z0-9][\w.\-]*[A-Za-z0-9]\b")
# Where a sentence, a markdown heading ("## One panel") or a list item starts.
_SENTENCE_START = re.compile(r"(^|[.!?:]\s+|\n\s*(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+)?)$")
# Capitalised words too common to be a page's own name.
_COMMON = {
    "a", "an", "and", "are", "as", "at", "by", "for", "from", "he", "her", "his", "i", "in", "is", "it", "its",
    "of", "on", "or", "our", "she", "the", "their", "they", "this", "to", "we", "with", "you", "your",
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
    "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
}  # fmt: skip
# Words that open a sentence before a name without being part of it ("Each Vantor node ...": "vantor", not "each").
_OPENING = set(
    "after all also before both but during each every few here how if many most no once one since some that then "
    "there these those today until what when where which while who why".split()
)


@dataclass
class Contamination:
    """General answers of the adapter that name what only the corpus introduced."""

    answers: int  # general answers with at least one leaked name
    of: int  # general answers compared (base and adapter both answered)
    leaks: dict[str, list[str]] = field(default_factory=dict)  # probe id -> the leaked names
    names: int = 0  # names found in the corpus


def corpus_names(texts: list[str]) -> set[str]:
    """The names a corpus introduces (lower-cased): capitalised words not opening a sentence, runs of them, and
    letter-digit codes."""
    names: set[str] = set()
    for text in texts:
        for m in _CODE.finditer(text):
            names.add(m.group().lower().rstrip(".-"))
        run: list[str] = []
        opened = False  # whether the run's first word opens its sentence
        for m in _WORD.finditer(text):
            word = m.group()
            opens = bool(_SENTENCE_START.search(text[: m.start()]))
            # A capitalised word opening a sentence is a name only as the start of a run ("Aurora Avionics").
            if word[0].isupper() and word.lower() not in _COMMON and not (opens and word.lower() in _OPENING):
                if opens and run:
                    names.update(_run_names(run, opened))
                    run = []
                if not run:
                    opened = opens
                run.append(word)
                continue
            names.update(_run_names(run, opened))
            run = []
        names.update(_run_names(run, opened))
    return {n for n in names if len(n) > 1}


def _run_names(run: list[str], opens: bool) -> set[str]:
    """A run of two or more capitalised words is a name, and so is its first word ("Castellan" of "Castellan
    Works"; its later words are often plain English, "works", "transit"); a word alone is one unless it opens its
    sentence."""
    if not run:
        return set()
    if len(run) == 1:
        return set() if opens else {run[0].lower()}
    return {" ".join(run).lower(), run[0].lower()}


def _named(text: str, names: set[str]) -> set[str]:
    low = text.lower()
    return {n for n in names if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", low)}


def measure_contamination(results: list[ProbeResult], names: set[str]) -> Contamination:
    """Per general (retention) answer, the corpus names the adapter says that neither the base's answer nor the
    question holds."""
    leaks: dict[str, list[str]] = {}
    compared = 0
    for r in results:
        if r.probe.kind != "retention" or r.base is None or r.adapter is None:
            continue
        compared += 1
        asked = f"{r.probe.question or ''} {r.probe.prompt or ''}"
        leaked = _named(r.adapter.text, names) - _named(r.base.text, names) - _named(asked, names)
        # A leaked run ("aurora avionics") already covers its words: report the longest names only.
        leaked = {n for n in leaked if not any(n != o and n in o.split() for o in leaked)}
        if leaked:
            leaks[r.probe.id] = sorted(leaked)
    return Contamination(len(leaks), compared, leaks, len(names))


def contamination_line(data: dict[str, Any] | None) -> str:
    """One line for reports: "1 of 13 general answers name the corpus (mona-lisa: kestrel k7)"."""
    if not data or not data.get("of"):
        return ""
    shown = "; ".join(f"{pid}: {', '.join(names)}" for pid, names in list(data["leaks"].items())[:3])
    return f"{data['answers']} of {data['of']} general answers name the corpus" + (f" ({shown})" if shown else "")
