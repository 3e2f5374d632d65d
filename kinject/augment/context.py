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
from dataclasses import dataclass

from .english import AUX, DETERMINERS, JOURNEYS, NOT_VERBS, PREPOSITIONS, upper_first, verb_at

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
_OF_NAME = r"((?:[a-z]+ ){0,2}[a-z]{3,}) (?:for|of) (?:the )?((?:[A-Z][\w-]* ){0,3}[A-Z][\w-]*)"


def named_things(text: str) -> list[str]:
    """A name with the common noun the page says it with, when the page also says that noun alone: "Lumora line"
    where it writes "the Lumora line" and later "The line is served by ...", "vector engine for Amazon OpenSearch
    Serverless" where it later writes "The vector engine adds ..."."""
    found = []
    for match in re.finditer(r"\b[Tt]he ((?:[A-Z][\w-]* ){1,3})([a-z]{3,})\b", text):
        noun = match.group(2)
        if noun not in AUX and re.search(rf"\b[Tt]he {noun}\b", text):
            found.append(match.group(1) + noun)
    for match in re.finditer(rf"\b[Tt]he {_OF_NAME}", text):
        phrase = match.group(1)
        if phrase.split()[0] not in AUX and re.search(rf"\b[Tt]he {phrase}\b(?! (?:for|of)\b)", text):
            found.append(match.group(0)[4:])
    return list(dict.fromkeys(found))


def phrase_of(thing: str) -> str:
    """The words a page refers back to ``thing`` by: "line" for the Lumora line, "vector engine" for the vector
    engine for Amazon OpenSearch Serverless."""
    described = re.fullmatch(_OF_NAME, thing)
    return described.group(1) if described else thing.split()[-1].lower()


def referenced(text: str, names: list[str]) -> list[str]:
    """The names of ``names`` (of two words or more) that the page refers back to (``phrase_of``): "the line" for
    the Harbor Line, "the telescope" for the Halden Telescope."""
    found = []
    for name in dict.fromkeys(names):
        phrase = phrase_of(name)
        if " " in name and re.fullmatch(r"[a-z ]+", phrase) and re.search(rf"\b[Tt]he {phrase}\b(?![\w-])", text):
            found.append(name)
    return found


def mentioned(sentence: str, things: list[str], current: str = "") -> str:
    """The first of ``things`` that ``sentence`` names, or refers to by its phrase ("The telescope ..."; the
    ``current`` one when two share it), or ""."""
    places = []
    for thing in things:
        whole = re.search(rf"(?<![\w-]){re.escape(thing)}(?![\w-]| [A-Z0-9])", sentence)  # not "... Telescope Mini"
        places += [(whole.start(), thing)] if whole else []
        if sum(phrase_of(t) == phrase_of(thing) for t in things) == 1 or thing == current:
            match = re.search(rf"\b[Tt]he {re.escape(phrase_of(thing))}\b(?![\w-])", sentence)
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


_VERBS = "is|was|are|were|has|had|have|will|can|could|would|may|might|must|should|did|does"


def the_name(thing: str, text: str) -> str:
    """``thing`` with the article the page ``text`` gives it ("the Lumora line", "the Quarro V4", "Amazon Bedrock"):
    "the" where the page writes "the <thing>" as the thing itself, not as a modifier ("the Brisa Robotics team"),
    and never opens a sentence with the bare name ("Brisa Robotics makes robots")."""
    name = re.escape(thing)
    if re.search(rf"(?:^|[.!?]\s+){name}\s", text):
        return thing
    itself = rf"\b[Tt]he {name}(?:'s\b|[,.;:)]|$|\s(?:{_VERBS}|[a-z]+s)\b)"
    return f"the {thing}" if re.search(itself, text, re.M) else thing


@dataclass(frozen=True)
class PartForms:
    """A part a sentence says with its thing ("The crossing of the Lumora line"): the part, and the ways a reader
    names it, each with ``{}`` where the part, or a wider word for it ("trip"), stands."""

    part: str
    forms: tuple[str, ...]


def name_first(sentence: str, added: tuple[int, int] | None, thing: str, text: str) -> PartForms | None:
    """The subject ``with_context`` made ("The crossing of the Lumora line") and the ways a reader names the same
    part by the thing first: "The Lumora line's crossing" and, for a one-word part, "The Lumora line crossing",
    "The Halden Telescope project"; a journey is also one taken on its line ("The crossing on the Lumora line").
    None where nothing was added, or the part was not "The <part> of"."""
    if not added or not sentence[added[0] :].startswith(" of ") or not sentence.startswith("The "):
        return None
    part, named = sentence[4 : added[0]], the_name(thing, text)
    forms = [f"The {{}} of {named}", f"{upper_first(named)}'s {{}}"]
    if " " not in part:
        forms.append(f"The {named.removeprefix('the ')} {{}}")
    if part in JOURNEYS:
        forms.append(f"The {{}} on {named}")
    return PartForms(part, tuple(forms))


def with_context(sentence: str, thing: str, text: str, things: list[str]) -> tuple[str, tuple[int, int] | None]:
    """``sentence`` with ``thing`` said where its subject leaves it out, and where the words put in stand (None when
    nothing changed). ``text`` is the page, for the article it gives the thing ("the Lumora line"); ``things`` are
    the ones it refers back to (``referenced``): "The telescope" is the one whose phrase is "telescope"."""
    words = sentence.split(" ")
    n = _subject(words)
    if not n or not thing:
        return sentence, None
    subject, head = " ".join(words[:n]), words[n - 1].lower()
    same = [t for t in things if phrase_of(t).split()[-1] == head]
    if same:  # "The line": the Harbor Line (the current one when two lines were named)
        said = [t for t in same if subject.lower() == f"the {phrase_of(t)}" and (t == thing or len(same) == 1)]
        if not said:
            return sentence, None
        named = the_name(said[0], text)
        named = upper_first(named)
        return named + sentence[len(subject) :], (len(named) - len(said[0]), len(named))
    if re.search(rf"(?<![\w-]){re.escape(thing)}(?![\w-])", sentence):
        return sentence, None
    added = f" {'for' if head in _FOR else 'of'} {the_name(thing, text)}"
    return subject + added + sentence[len(subject) :], (len(subject), len(subject) + len(added))
