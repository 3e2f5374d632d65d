"""The context a sentence leaves to the ones before it, said in the sentence.

A page names a thing once and then writes "The crossing takes 35 minutes" or "Tickets cost 6.50 euros": a question
made from that sentence ("How long does the crossing take?") and its answer do not say which crossing, so the model
learns a fact about no thing in particular and cannot answer "How long is the trip on the Lumora line?". Here such
a sentence gets its thing back: "The crossing of the Lumora line takes 35 minutes", "Tickets for the Lumora line
cost 6.50 euros", and "The line was built by ..." becomes "The Harbor Line was built by ...".

The thing is the one the page refers back to ("the line", "the telescope": ``referenced``), the first one the
sentences before named or referred to (``mentioned``). A sentence whose subject is a company, a place or people is
left as it is: "The city plans ..." is not the line's city.
"""

from __future__ import annotations

import re

from .english import AUX, DETERMINERS, NOT_VERBS, PREPOSITIONS, verb_at

MAX_SUBJECT_WORDS = 4  # "The first departure", "Each boat", "Tickets": a short noun phrase before the verb
OPENERS = frozenset(("The", "Each", "Every"))
# Heads of a subject that is not a part of the thing the page is about.
_OWN_THINGS = frozenset(
    "company firm group startup maker team organisation organization government city town country region state "
    "university school college agency ministry council observatory people children adults".split()
)
_PEOPLE = re.compile(r"(?:ers|ors|ists|ents|ants|ians)$")  # "Developers", "Residents", "Engineers"
_NOT_NOUNS = DETERMINERS | NOT_VERBS | {"hers", "ours", "theirs", "yours", "thus"}
_FOR = frozenset("ticket tickets fare fares price prices pass passes".split())  # "Tickets for the Lumora line"


def named_things(text: str) -> list[str]:
    """A name with the common noun the page says it with, when the page also says that noun alone: "Lumora line"
    where it writes "the Lumora line" and later "The line is served by ..."."""
    found = []
    for match in re.finditer(r"\b[Tt]he ((?:[A-Z][\w-]* ){1,3})([a-z]{3,})\b", text):
        noun = match.group(2)
        if noun in AUX or not re.search(rf"\b[Tt]he {noun}\b", text):
            continue
        found.append(match.group(1) + noun)
    return list(dict.fromkeys(found))


def referenced(text: str, names: list[str]) -> list[str]:
    """The names of ``names`` (of two words or more) that the page refers back to by their last word: "the line"
    for the Harbor Line, "the telescope" for the Halden Telescope."""
    found = []
    for name in dict.fromkeys(names):
        head = name.split()[-1].lower()
        if " " in name and head.isalpha() and re.search(rf"\b[Tt]he {head}\b(?![\w-])", text):
            found.append(name)
    return found


def _head(name: str) -> str:
    return name.split()[-1].lower()


def mentioned(sentence: str, things: list[str], current: str = "") -> str:
    """The first of ``things`` that ``sentence`` names, or refers to by its last word ("The telescope ..."; the
    ``current`` one when two share that word), or ""."""
    places = []
    for thing in things:
        whole = re.search(rf"(?<![\w-]){re.escape(thing)}(?![\w-]| [A-Z0-9])", sentence)  # not "... Telescope Mini"
        places += [(whole.start(), thing)] if whole else []
        if sum(_head(t) == _head(thing) for t in things) == 1 or thing == current:
            match = re.search(rf"\b[Tt]he {re.escape(_head(thing))}\b(?![\w-])", sentence)
            places += [(match.start(), thing)] if match else []
    return min(places)[1] if places else ""


def _subject(words: list[str]) -> int:
    """How many words open ``words`` as a short subject with no name ("The crossing", "Tickets"), or 0."""
    at = verb_at(words)
    verbs = [i for i, w in enumerate(words[:MAX_SUBJECT_WORDS]) if w in ("cost", "costs")] + ([at[0]] if at else [])
    end = min(verbs, default=0)
    if re.fullmatch(r"[A-Z][a-z]+s", words[0]) and len(words) > 1 and re.fullmatch(r"[a-z]+", words[1]):
        end = 1 if words[1] not in PREPOSITIONS | DETERMINERS | {"and", "or"} else end  # "Trams come every ..."
    if not 1 <= end <= MAX_SUBJECT_WORDS:
        return 0
    head, rest = words[end - 1], words[1:end]
    if not all(re.fullmatch(r"[a-z][a-z-]*", w) for w in rest) or head.lower() in _OWN_THINGS:
        return 0
    if end == 1:  # a plural noun on its own ("Tickets", "Trams"), not people, not "Its"
        plain = re.fullmatch(r"[A-Z][a-z]+s", head) and not _PEOPLE.search(head) and head.lower() not in _NOT_NOUNS
        return 1 if plain else 0
    return end if words[0] in OPENERS else 0


def with_context(sentence: str, thing: str, text: str, things: list[str]) -> tuple[str, tuple[int, int] | None]:
    """``sentence`` with ``thing`` said where its subject leaves it out, and where the words put in stand (None when
    nothing changed). ``text`` is the page, for the article it gives the thing ("the Lumora line"); ``things`` are
    the ones it refers back to (``referenced``): "The telescope" is the one whose last word is "telescope"."""
    words = sentence.split(" ")
    n = _subject(words)
    if not n or not thing:
        return sentence, None
    subject, head = " ".join(words[:n]), words[n - 1].lower()
    same = [t for t in things if _head(t) == head]
    if same:  # "The line": the Harbor Line (the current one when two lines were named)
        if n != 2 or words[0] != "The" or (len(same) > 1 and thing not in same):
            return sentence, None
        said = f"The {thing if len(same) > 1 else same[0]}"
        return said + sentence[len(subject) :], (4, len(said))
    if re.search(rf"(?<![\w-]){re.escape(thing)}(?![\w-])", sentence):
        return sentence, None
    article = "the " if re.search(rf"\b[Tt]he {re.escape(thing)}\b", text) else ""
    added = f" {'for' if head in _FOR else 'of'} {article}{thing}"
    return subject + added + sentence[len(subject) :], (len(subject), len(subject) + len(added))
