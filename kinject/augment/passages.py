"""The passages of a corpus and the facts augmentation asks about in them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..facts import name_spans, numeric_spans, paragraphs, sentences
from .filters import normalized

MIN_PASSAGE_WORDS = 12


@dataclass
class Passage:
    """A paragraph (short ones merged with the next) of one corpus document."""

    id: str
    source: str
    title: str
    text: str


def split_passages(documents: list[dict[str, Any]]) -> list[Passage]:
    """The passages of the corpus documents (``text``, ``source``, ``title``); a heading-only paragraph (the
    title) and anything shorter than MIN_PASSAGE_WORDS is joined to the next."""
    found = []
    for d, doc in enumerate(documents):
        pending = ""
        k = 0
        for para in paragraphs(doc["text"]):
            if para.strip() == (doc.get("title") or "").strip():
                continue
            pending = f"{pending} {para}".strip()
            if len(pending.split()) >= MIN_PASSAGE_WORDS:
                k += 1
                found.append(Passage(f"d{d + 1}p{k}", doc.get("source", ""), doc.get("title", ""), pending))
                pending = ""
        if pending and len(pending.split()) >= 3:
            found.append(Passage(f"d{d + 1}p{k + 1}", doc.get("source", ""), doc.get("title", ""), pending))
    return found


def facts_of(sentence: str) -> list[str]:
    """The facts a sentence can be asked about: its dates and numbers, then its specific names."""
    seen, facts = set(), []
    for span in [*numeric_spans(sentence), *name_spans(sentence)]:
        key = normalized(span.text)
        if key and key not in seen and len(sentence[: span.start].split()) >= 1:
            seen.add(key)
            facts.append(span.text)
    return facts


def asked_sentences(text: str) -> list[str]:
    """The sentences of a passage that questions are asked about: whole sentences of five words or more."""
    return [s for s in sentences(text) if len(s.split()) >= 5 and s.endswith((".", "!", "?"))]


def topic_of(sentence: str, title: str) -> str:
    """What a sentence is about, for template questions: its first specific name, else its document's title."""
    names = name_spans(sentence)
    if names and names[0].start < len(sentence) // 2:
        return names[0].text
    return title.rstrip(".") or "this topic"
