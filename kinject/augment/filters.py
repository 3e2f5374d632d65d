"""The filters that decide which generated rows are kept: each returns why a row is unusable, "" when usable."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .facts import key_terms, name_words, numeric_spans, words_of

STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how in into is it its of on or that the their this "
    "to was what when where which who why will with about after also any been more most not one only other such "
    "than them then there these they those through under up use used using very while your".split()
)


def normalized(text: str) -> str:
    """``text`` as the evaluation's answer matching compares it (lower case, no punctuation or articles)."""
    from .matching import normalize_answer  # imported late: the eval package imports much more

    return normalize_answer(text)


def content_words(text: str) -> set[str]:
    """Lower-case words of four letters or more that carry meaning (no stop words)."""
    return {w for w in re.findall(r"[a-z0-9][a-z0-9\-]{3,}", text.lower()) if w not in STOPWORDS}


def paraphrase_problem(passage: str, rewrite: str) -> str:
    """Why a rewrite cannot stand for its passage ("" when it can): a number or name dropped or changed, a new
    number, a copy, or a length far from the passage's."""
    if not rewrite.strip():
        return "empty"
    if normalized(rewrite) == normalized(passage):
        return "a copy of the passage"
    kept, got = key_terms(passage), key_terms(rewrite)
    missing = sorted(kept - got)
    if missing:
        return f"drops or changes {', '.join(missing[:3])}"
    words = words_of(rewrite)
    dropped = [name for name, parts in name_words(passage).items() if parts and not parts & words]
    if dropped:
        return f"drops {', '.join(dropped[:3])}"
    numbers = {normalized(s.text) for s in numeric_spans(rewrite)} - {
        normalized(s.text) for s in numeric_spans(passage)
    }
    if numbers:
        return f"adds {', '.join(sorted(numbers)[:3])}, which the passage does not say"
    ratio = len(rewrite.split()) / max(len(passage.split()), 1)
    if not 0.4 <= ratio <= 3.0:
        return f"{ratio:.1f} times the passage's length"
    return ""


def question_problem(question: str, sentence: str, answer: str, shares_words: bool = True) -> str:
    """Why a written question is unusable ("" when usable): not a question, too short or long, giving its
    numeric answer away, or (``shares_words``) about something the sentence does not mention."""
    question = question.strip()
    if not question.endswith("?"):
        return "not a question"
    words = len(question.split())
    if not 4 <= words <= 30:
        return f"{words} words"
    if answer and numeric_spans(answer) and f" {normalized(answer)} " in f" {normalized(question)} ":
        return "contains its answer"  # (a name it asks about may be the sentence's subject, and is allowed)
    if shares_words and not content_words(question) & content_words(sentence):
        return "shares no word with the sentence"
    return ""


def dropped_names(source: str, rewording: str, names: Iterable[str]) -> list[str]:
    """The page's ``names`` that ``source`` says and its ``rewording`` does not, longest first ("How big is the mirror
    of the Halden Telescope Mini?" reworded "What is the mirror's size?" drops "Halden Telescope Mini"): a question
    that no longer names its thing teaches the fact as the answer about any mirror, or about a look-alike's."""
    dropped: list[str] = []
    for name in sorted({n for n in names if n}, key=len, reverse=True):  # "... Mini" before "Halden Telescope"
        said = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
        if said.search(source):
            source = said.sub(" ", source)
            if not said.search(rewording):
                dropped.append(name)
    return dropped


def unsupported_terms(answer: str, passage: str) -> str:
    """What an answer states that its passage does not ("" when nothing): a number or a specific name."""
    unknown = sorted(key_terms(answer) - key_terms(passage))
    numbers = {normalized(s.text) for s in numeric_spans(answer)} - {
        normalized(s.text) for s in numeric_spans(passage)
    }
    if unknown or numbers:
        return f"states {', '.join(sorted(set(unknown) | numbers)[:3])}, which the passage does not"
    words = words_of(passage)
    names = [name for name, parts in name_words(answer).items() if parts and not parts & words]
    if names:
        return f"names {', '.join(names[:3])}, which the passage does not"
    return ""


def answer_problem(answer: str, passage: str) -> str:
    """Why an answer is not supported by its passage ("" when it is): a number or name the passage does not state,
    or mostly words the passage does not use."""
    if not answer.strip():
        return "empty"
    problem = unsupported_terms(answer, passage)
    if problem:
        return problem
    words = content_words(answer)
    if words and len(words & content_words(passage)) / len(words) < 0.6:
        return "mostly words the passage does not use"
    return ""
