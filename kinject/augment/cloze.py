"""Questions made from a sentence itself: the fact replaced by a question word of its kind ("The Tidewell T2 goes
on sale on what date?"), cut to the clause that holds it.

Deterministic and independent of the generator: every fact gets a question that asks for exactly that fact, which a
small generator's written questions often do not (they ask about another part of the sentence, or about nothing
the sentence says).
"""

from __future__ import annotations

import re

from .english import upper_first
from .facts import _OPENERS, Span, name_spans, numeric_spans

MAX_WORDS = 30  # question_problem's limit
SHORT_WORDS = 10  # a question this short also takes the clause after the fact's, for context
_PERSON_BEFORE = re.compile(
    r"(?:\bsaid|\bsays|\bby|\bCEO|\bexecutive|\bfounder|\bdirector|\bled by|\bastronomer|\bscientist|\bengineer"
    r"|\barchitect|\bdesigner|\bresearcher|\bprofessor|\bminister|\bmayor|\bauthor|\bartist|\bchef|\bcaptain)\s*$",
    re.I,
)
_PERSON_AFTER = re.compile(
    r"^,?\s*(?:(?:is|was)\s+)?(?:the\s+)?(?:chief|CEO|founder|head|director|president|engineer|architect|designer)\b",
    re.I,
)
_PERCENT = re.compile(r"%|\bpercent\b")
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_MONTH_YEAR = re.compile(r"^[A-Z][a-z]+\s+\d{4}$")
_NAME_BEFORE = re.compile(r"\b[A-Z][\w\-]*\s$")
_CURRENCY = {"$": "dollars", "€": "euros", "£": "pounds"}
_NAMED_UNIT = re.compile(r"^ ((?:[A-Z][\w-]* ){1,3}[A-Z]*[a-z]*s)\b")  # " NVIDIA H100 GPUs": a plural after a name


def wh_phrase(sentence: str, span: Span) -> tuple[int, int, str]:
    """The question words that stand for ``span`` in ``sentence``, and the characters they replace (a currency
    sign before a number goes with it)."""
    start, end, text = span.start, span.start + len(span.text), span.text
    if span.kind == "date":
        return start, end, "what month" if _MONTH_YEAR.match(text) else "what date"
    if span.kind == "time":
        return start, end, "what time"
    if span.kind == "number":
        if start and sentence[start - 1] in _CURRENCY:
            return start - 1, end, f"how many {_CURRENCY[sentence[start - 1]]}"
        if _PERCENT.search(text):
            return start, end, "what percentage"
        if _YEAR.match(text):
            return start, end, "what year"
        unit = text.split(maxsplit=1)[1] if " " in text else ""
        named = _NAMED_UNIT.match(sentence[end:]) if not unit else None
        if named:  # "8 NVIDIA H100 GPUs": "how many NVIDIA H100 GPUs", the count of a named thing
            return start, end + len(named.group(0)), f"how many {named.group(1)}"
        return start, end, f"how many {unit}".strip()
    if _NAMED_UNIT.match(sentence[end:]):  # "NVIDIA H100 Tensor Core GPUs": which Tensor Core GPUs
        return start, end, "which"
    person = _PERSON_BEFORE.search(sentence[:start]) or _PERSON_AFTER.match(sentence[end:])
    return start, end, "who" if person else "what"


def _clauses(text: str) -> list[str]:
    """``text`` split at ", " (commas inside numbers stay, and so does a date's before its year)."""
    return [c for c in re.split(r",\s+(?!\d{4}\b)", text) if c]


def _body(text: str) -> str:
    """A sentence without its closing punctuation (a closing quotation mark stays)."""
    return re.sub(r"[.!?]+([\"'\u201d]?)$", r"\1", text.strip()).strip()


def _names_number(sentence: str, span: Span) -> bool:
    """Whether a bare number is part of a name ("Nimbus 12"), not a quantity ("In 2023", a sentence's first word)."""
    if span.kind != "number" or " " in span.text:
        return False
    before = _NAME_BEFORE.search(sentence[: span.start])
    return bool(before and before.start() > 0 and before.group().strip() not in _OPENERS)


def cloze_question(sentence: str, span: Span) -> str:
    """``sentence`` as a question about ``span``: the fact replaced by its question words, cut to the clauses up to
    the fact's (the first and the fact's when those are over MAX_WORDS), and the next one when that is short or
    the fact ends its clause, ending in "?"; "" when there is nothing to ask from (the subject is a whole clause
    and the last) or the fact is a name's number."""
    if _names_number(sentence, span):
        return ""
    start, end, wh = wh_phrase(sentence, span)
    marker = "\x00"
    clauses = _clauses(_body(sentence[:start] + marker + sentence[end:]))
    at = next(i for i, c in enumerate(clauses) if marker in c)
    if at == 0 and clauses[0].strip() == marker:  # "X, a maker of ...": ask what is "a maker of ..."
        if at + 1 >= len(clauses):
            return ""
        clauses = [f"{marker} is {clauses[at + 1]}"]
        at = 0
    picked = clauses[: at + 1] if len(" ".join(clauses[: at + 1]).split()) <= MAX_WORDS else [clauses[0], clauses[at]]
    ends_clause = clauses[at].rstrip().endswith(marker)  # "said who": the next clause says who they are
    if (ends_clause or len(" ".join(picked).split()) < SHORT_WORDS) and at + 1 < len(clauses):
        picked.append(clauses[at + 1])
    question = ", ".join(dict.fromkeys(picked)).replace(marker, wh)  # at 0 over MAX_WORDS: the first clause once
    if question.startswith(wh):
        question = upper_first(question)
    return question.rstrip(",;: ") + "?"


def fact_spans(sentence: str) -> list[Span]:
    """The spans of the facts ``facts_of`` asks about, in the same order (its texts, first occurrence each), then
    the one-word names inside the sentence ("Brennholt"), which are too vague for a written question but not for
    the sentence's own."""
    from .passages import facts_of

    # The first occurrence after the sentence's first word: the one facts_of asks about.
    spans = {s.text: s for s in reversed([*numeric_spans(sentence), *name_spans(sentence)]) if s.start > 0}
    found = [spans[f] for f in facts_of(sentence) if f in spans]
    covered = {c for s in found if s.kind == "name" for c in s.text.split()}
    numeric = [(s.start, s.start + len(s.text)) for s in numeric_spans(sentence)]
    for span in name_spans(sentence, specific=False):
        end = span.start + len(span.text)
        inside = any(a <= span.start < b for a, b in numeric)  # "October" of a date
        named = re.match(r"\s\d", sentence[end:])  # "Nimbus" of "Nimbus 12"
        spaced = span.start and sentence[span.start - 1] == " "  # not "Cities" opening a quotation
        if spaced and " " not in span.text and span.text not in covered and not inside and not named:
            covered.add(span.text)
            found.append(span)
    return found


# A clause that opens with one of these and then names its own subject stands alone ("and today she leads ...",
# "while the V3 was rated ..."); "and runs a studio ..." does not.
_JOINERS = re.compile(
    r"^(?:and|but|while|so|where|whereas)\s+(?=(?:[A-Z0-9]|(?:the|she|he|it|they|its|their|her|his|this|these|today|both)\b))"
)


def fact_clause(sentence: str, fact: str) -> str:
    """The part of ``sentence`` that states ``fact``, as a sentence: its clause when that stands alone ("and today
    she leads a group of 140 chip designers" -> "Today she leads a group of 140 chip designers."), else the
    sentence's first clause with it ("Corvane, a laptop maker from Lindhaven."); the whole sentence when the fact
    is not found in one clause."""
    clauses = _clauses(_body(sentence))
    alone = re.compile(rf"(?<![\w.,]){re.escape(fact)}(?![\w]|[.,]\d)")  # "14", not the "14" of "140"
    at = next((i for i, c in enumerate(clauses) if alone.search(c)), None)
    if at is None:
        return sentence
    if at == 0:
        picked = [clauses[0]]
        if len(clauses[0].split()) < 4 and len(clauses) > 1:  # "In 2023, ..."; longer: a look-alike may follow
            picked.append(clauses[1])
        text = ", ".join(picked)
    elif _JOINERS.match(clauses[at]) and len(clauses[at].split()) >= 5:
        text = _JOINERS.sub("", clauses[at])
    else:  # "Corvane, a laptop maker from Lindhaven"; "Orvanta Metering today announced the Tidewell T2"
        bare_subject = at > 1 and len(clauses[0].split()) <= 3  # the clauses between were its apposition
        text = f"{clauses[0]}{'' if bare_subject else ','} {clauses[at]}"
    text = upper_first(text)
    return text if text.endswith((".", "!", "?", '"')) else text + "."
