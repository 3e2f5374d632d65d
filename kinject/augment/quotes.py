"""A fact said inside a quotation, as the reported clause a question can ask from.

Press releases put figures in quotes ('"We expect to save 4,800 tonnes of diesel a year," said Marit Ekholm, the
chief executive of Calvane Transit.'). Quoted words are not the page's own statement, and "we" names nobody, so the
rules asked nothing of such a fact. ``reported`` says the quote in the third person, "we" read as the organisation
the speaker's role is of and "I" as the speaker ("Calvane Transit expects to save 4,800 tonnes of diesel a year."),
so the usual rules ask "How many tonnes of diesel does Calvane Transit expect to save a year?" and answer with that
clause. A quote whose speaker or first person cannot be named is left unasked.
"""

from __future__ import annotations

import re

from .english import AUX, IRREGULAR_PAST
from .facts import Span, name_spans
from .relations import apposition

_SAYS = r"(?:said|says|added|adds|explained|explains|noted|notes)"
# '"<quote>," said <speaker ...>.' and '"<quote>," <speaker> said.'
_AFTER = re.compile(r"^[\"\u201c](?P<quote>[^\"\u201c\u201d]+?)[,.]?[\"\u201d],?\s+(?P<rest>.+?)\.?$")
_ORG = re.compile(r"^the (?:[\w-]+ ){0,3}?(?:of|at) (?P<org>(?:the )?[A-Z][^,;]*)$")
_FIRST_PERSON = re.compile(r"\b(?:we|We|us|our|Our|ours|I|me|my|My|mine)\b")
_TO_THIRD = {"are": "is", "were": "was", "have": "has", "do": "does", "am": "is", "'re": " is", "'ve": " has"}


def _speaker(rest: str) -> tuple[str, str] | None:
    """(speaker, text after "said") of the words after a quote, or None when they attribute it to nobody named."""
    said = re.match(rf"{_SAYS}\s+(?P<who>.+)$", rest)
    if said:
        who = said.group("who")
    else:
        said = re.match(rf"(?P<who>.+?),?\s+{_SAYS}$", rest)
        if not said:
            return None
        who = said.group("who")
    spans = name_spans(who)
    if not spans or spans[0].start != 0:
        return None
    return spans[0].text, who


def _third_person(verb: str) -> str:
    """``verb``, said after "we" or "I", as it is said after a singular name ("expect" -> "expects")."""
    lower = verb.lower()
    if lower in _TO_THIRD:
        return _TO_THIRD[lower]
    if lower in AUX or lower in IRREGULAR_PAST or lower.endswith("ed"):  # "will", "can", "opened": as they are
        return verb
    return verb + "es" if re.search(r"(?:ch|sh|ss|x|z|o)$", lower) else verb + "s"


def reported(sentence: str, span: Span, names: tuple[str, ...] = ()) -> tuple[str, Span] | None:
    """(the quote as a reported sentence, the fact's span in it) when the fact at ``span`` lies inside a quotation
    attributed to a named speaker, its first person named ("we": the organisation of the speaker's role, "I": the
    speaker); None otherwise."""
    found = _AFTER.match(sentence.strip())
    if not found or not found.start("quote") <= span.start < found.end("quote"):
        return None
    speaker = _speaker(found.group("rest"))
    if speaker is None:
        return None
    name, who = speaker
    quote = found.group("quote")
    at = span.start - found.start("quote") - (len(quote) - len(quote.lstrip()))  # the fact's place in the quote
    quote = quote.strip()
    first = re.match(r"(?P<subject>We|I)(?P<short>'re|'ve)?\s+(?P<verb>[a-z]+)?", quote)
    if first:
        if first.group("subject") == "I":
            subject = name
        else:
            role = _ORG.match(apposition(who, Span(0, name, "name"), names))
            if not role:
                return None
            subject = role.group("org")
        verb = first.group("short") or first.group("verb") or ""
        said = f"{subject}{_third_person(verb)}" if first.group("short") else f"{subject} {_third_person(verb)}"
        cut = first.end() if not first.group("short") else first.end("short")
        quote, at = said + quote[cut:], at - cut + len(said)
    if _FIRST_PERSON.search(quote) or not 0 <= at <= len(quote) - len(span.text):
        return None
    if quote[at : at + len(span.text)] != span.text:
        return None
    text = quote[0].upper() + quote[1:] + "."
    return text, Span(at, span.text, span.kind)
