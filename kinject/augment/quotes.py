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

from .english import AUX, IRREGULAR_PAST, third_person
from .facts import Span, name_spans
from .relations import apposition

_SAYS = r"(?:said|says|added|adds|explained|explains|noted|notes)"
# '"<quote>," said <speaker ...>.' and '"<quote>," <speaker> said.'
_AFTER = re.compile(r"^[\"\u201c](?P<quote>[^\"\u201c\u201d]+?)[,.]?[\"\u201d],?\s+(?P<rest>.+?)\.?$")
# the organisation a role is of: its capitalised words ("the chief executive of Calvane Transit since 2019")
_ORG = re.compile(r"^the (?:[\w-]+ ){0,3}?(?:of|at) (?P<org>(?:the )?[A-Z][\w&.'-]*(?: (?:[A-Z][\w&.'-]*|&))*)")
_FIRST_PERSON = re.compile(r"\b(?:we|We|us|our|Our|ours|ourselves|ourself|I|me|my|My|mine|myself)\b")
# "We now serve": words between the subject and its verb
_BETWEEN = frozenset("now also still already only currently really just recently first soon".split())
_ADVERBS = rf"(?:(?: (?:{'|'.join(sorted(_BETWEEN))}))*)"
_TO_THIRD = {"are": "is", "were": "was", "have": "has", "do": "does", "am": "is"}
_SHORT = {"'re": " is", "'ve": " has", "'m": " is"}
# Past forms that would otherwise read as present verbs, and verbs whose past is their present ("We cut"): the
# first stay as they are, the second leave the tense unknown, so the quote is not asked.
_PAST = frozenset("saw did met thought knew felt drove flew broke struck sought".split())  # not in IRREGULAR_PAST
_EITHER = frozenset("cut hit put set let shut cost hurt spread read quit".split())
_PRESENT_EED = frozenset("need exceed succeed proceed feed speed".split())


def _speaker(rest: str) -> tuple[str, str] | None:
    """(speaker, text after "said") of the words after a quote, or None when they attribute it to nobody named."""
    said = re.match(rf"{_SAYS}\s+(?P<who>.+)$", rest) or re.match(rf"(?P<who>.+?),?\s+{_SAYS}$", rest)
    if not said:
        return None
    who = said.group("who")
    spans = name_spans(who)
    if not spans or spans[0].start != 0:
        return None
    return spans[0].text, who


def _third_person(verb: str) -> str | None:
    """``verb``, said after "we" or "I", as it is said after a singular name ("expect" -> "expects", "carry" ->
    "carries"); None when its tense cannot be told ("cut")."""
    lower = verb.lower()
    if lower in _TO_THIRD:
        return _TO_THIRD[lower]
    if lower in _EITHER:
        return None
    if (
        lower in AUX
        or lower in IRREGULAR_PAST
        or lower in _PAST
        or (lower.endswith("ed") and lower not in _PRESENT_EED)
    ):
        return verb  # "will", "can", "opened", "saw": as they are
    return third_person(verb)


def _subject_said(quote: str, name: str, org: str) -> tuple[str, int] | None:
    """(the quote's opening words in the third person, how many characters of the quote they replace) when it
    opens with "We" or "I" ("We now serve" -> "Calvane Transit now serves"); ("", 0) when it opens otherwise; None
    when the first person cannot be named or its verb not told."""
    first = re.match(
        rf"(?P<subject>We|I)(?:(?P<short>'re|'ve|'m)\b|(?P<between>{_ADVERBS}) (?P<verb>[a-z]+)\b)", quote
    )
    if not first:
        return ("", 0) if not re.match(r"(?:We|I)\b", quote) else None
    subject = name if first.group("subject") == "I" else org
    if not subject or quote[first.end() : first.end() + 1] == "'":  # "We don't": not rewritten
        return None
    if first.group("short"):
        return subject + _SHORT[first.group("short")], first.end()
    between = first.group("between").split()
    verb = _third_person(first.group("verb"))
    if verb is None:
        return None
    return " ".join([subject, *between, verb]), first.end()


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
    quote = found.group("quote").replace("\u2019", "'")  # one character for one: the offsets hold
    at = span.start - found.start("quote") - (len(quote) - len(quote.lstrip()))  # the fact's place in the quote
    quote = quote.strip()
    role = _ORG.match(apposition(who, Span(0, name, "name"), names))
    said = _subject_said(quote, name, role.group("org") if role else "")
    if said is None:
        return None
    words, cut = said
    quote, at = words + quote[cut:], at - cut + len(words)
    if _FIRST_PERSON.search(quote) or not 0 <= at <= len(quote) - len(span.text):
        return None
    if quote[at : at + len(span.text)] != span.text:
        return None
    first = quote.split(" ", 1)[0]
    if at > 0 and first.islower():  # not "eBay", "iPhone": a name keeps its own capitals
        quote = quote[0].upper() + quote[1:]
    return quote + ".", Span(at, span.text, span.kind)
