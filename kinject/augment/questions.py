"""Questions that ask for one fact, made from the fact's own sentence (no model needed), and the one-fact answer.

A small generator's written questions often ask about another part of the sentence, or about nothing it says; a
question made from the sentence asks for exactly its fact by construction. From the clause that states the fact,
with its subject named (``clauses``: an apposition's name, "it" replaced by the page's subject, a participle's noun):

- the *cloze* form: the fact replaced by question words of its kind ("The Tidewell T2 goes on sale on what date?",
  "The Lumora Grand carries how many passengers?", "Calvane Transit opened which line?");
- the *fronted* form, where the clause's verb is plain to see: the question words first and the auxiliary before
  the subject ("How many passengers does the Lumora Grand carry?");
- both again from the clause *trimmed* of the phrase after the fact ("Each boat recharges at Pellisk for how many
  minutes?" without "between crossings from a shore battery"), and the clause *embedded* in another question ("Do
  you know for how many minutes each boat recharges at Pellisk?");
- a role an apposition or "X is the chief architect of Y" states, asked the ways English turns it around
  (``relations``: "Who is Calvane Transit's chief executive?", "Who heads Calvane Transit?"), and the company a
  release opens with asked from its product ("Who makes the Kestrel K7?");
- each with the subject's *short name* where it tells the subject apart from every other name of the pages ("the
  T2"; never "Lumora" where "Lumora Grand" and "Lumora Swift" both are), *described* as the pages describe one of
  two look-alike models ("the compact Nimbus" for "the Nimbus 12"; ``naming``), and with an attribute word said
  *otherwise* ("hold" for "carry", "CEO" for "chief executive").

A figure inside a quotation is asked from the quote said in the third person ("We expect to save 4,800 tonnes
...," said Marit Ekholm, the chief executive of Calvane Transit: "How many tonnes of diesel does Calvane Transit
expect to save a year?"; ``quotes``).

A coordination around the fact is cut to the half that holds it ("carries 410 passengers and 60 cars" asks and
answers "carries 410 passengers"; "was cast by Feldt & Sorn and weighs 19 tonnes" the weight as "The new mirror
weighs 19 tonnes"), so that a question asks for one fact and its answer states one.

The answer is that clause as a sentence of its own (``fact_sentence``): the fact with its subject, not the page's
sentence with four facts. Rules of English for ordinary news and product pages, not a parser: the generator's
rewordings (``rewrite``), the round trip (``roundtrip``) and the data report (``report``) cover what they miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .attributes import (
    amount_questions,
    duration_questions,
    education_questions,
    instrument_questions,
    limit_questions,
    possessed_questions,
    price_questions,
    size_questions,
    team_questions,
    when_questions,
)
from .clauses import REPORTED, fact_clause, kind_noun, own_clause, split_clauses
from .cloze import _NAMED_UNIT, _names_number, wh_phrase
from .conjuncts import one_conjunct
from .english import (
    DETERMINERS,
    EMBEDDINGS,
    MARK,
    NOT_VERBS,
    active,
    embedded,
    fronted,
    name_pronouns,
    reworded,
    trimmed,
    upper_first,
)
from .facts import MONTHS, Span
from .naming import DESCRIBING, ORG_WORDS, in_full
from .quotes import reported
from .relations import (
    agent_questions,
    behind_questions,
    holder_questions,
    launch,
    launch_answer,
    launch_questions,
    role_answer,
    role_holder,
    role_questions,
)

_ADJECTIVES = frozenset(
    "smaller larger bigger older newer new old first second third last next former latest original same other "
    "smallest largest biggest oldest newest early late".split()
)
_PLACE_VERBS = re.compile(
    r"\b(?:based|headquartered|located|situated|born|held|founded|opened|built|made)\s+(?:in|at)$"
)
_DESCRIBING = f"(?:{'|'.join(sorted(DESCRIBING))})"  # an adjective a page describes a look-alike by
_MONTH_NAMES = frozenset(MONTHS.split("|"))
_PLACE_KINDS = "town|city|island|village|region|province|county|port|district"  # not "the state of Vessa"
_SCHOOLS = frozenset("University College Institute School Academy Polytechnic Conservatory".split())


def _place(before: str, name: str) -> bool:
    """Whether the name ``name`` after ``before`` is a place a question asks with "where": after a place verb
    ("based in"), a school after "at", "from" or "in" ("at Brenna University"), a town after a plain "in" ("a studio
    in Lindhaven"; not a company, a model or a month)."""
    words = name.split()
    if _PLACE_VERBS.search(before.rstrip()) or (words[-1] in _SCHOOLS and re.search(r"\b(?:at|from|in)\s*$", before)):
        return True
    return bool(
        re.search(r"\b[a-z]+ in\s*$", before)
        and len(words) <= 2
        and not re.search(r"\d", name)
        and words[-1] not in ORG_WORDS | _SCHOOLS
        and words[0] not in _MONTH_NAMES
    )


@dataclass(frozen=True)
class Question:
    """One question made for a fact, and which rule made it (``cloze``, ``fronted``; ``+short`` when the subject is
    named by its short name, ``+reworded`` with an attribute word said otherwise)."""

    text: str
    origin: str


def _ask(sentence: str, span: Span) -> tuple[int, int, str]:
    """The characters a fact's question words replace, and those words: "which line" for "the Lumora line", "how
    many passengers" for "410 passengers", "which company" for "Brenmar Marine", "where" after "based in"."""
    start, end, wh = wh_phrase(sentence, span)
    after, before = sentence[end:], sentence[:start]
    if span.kind == "name":
        the = re.search(r"\b(?:the|an?) $", before)  # "the Lumora line", "an OpenAPI schema"
        nouns = [n for n in (re.match(r" ([a-z]{3,} [a-z]{3,})\b", after), re.match(r" ([a-z]{3,})\b", after)) if n]
        nouns = [n for n in nouns if all(kind_noun(w) for w in n.group(1).split())]
        nouns = [n for n in nouns if " " not in n.group(1) or not n.group(1).endswith("s")]
        if the and nouns:  # "the Lumora line", "the Kestrel K7 survey drone"
            return the.start(), end + len(nouns[0].group(0)), f"which {nouns[0].group(1)}"
        unit = _NAMED_UNIT.match(after)
        if unit:  # "NVIDIA H100 Tensor Core GPUs": "which Tensor Core GPUs"
            return start, end + len(unit.group(0)), f"which {unit.group(1)}"
        kind = re.search(r"\bthe ((?:[a-z]{3,} )?[a-z]{3,}) $", before)
        if kind and not set(kind.group(1).split()) & (DETERMINERS | _ADJECTIVES):
            # "the comet C/2031 Brisk", "the astronomer Tomas Ibarro", "the engineering firm Castellan Works"
            return kind.start(), end, f"which {kind.group(1)}"
        place = re.search(rf"\bthe ((?:[a-z]{{3,}} )?(?:{_PLACE_KINDS})) of $", before)
        if place:  # "links the harbour town of Pellisk": "which harbour town"
            return place.start(), end, f"which {place.group(1)}"
        if _place(before, span.text):
            return start, end, "where"
        last = span.text.split()[-1]
        if wh == "what" and last in ORG_WORDS:
            return start, end, "which company"
    if wh == "how many" and span.kind == "number":
        hyphen = re.match(r"-([a-z]+)", after)
        noun = re.match(r" ([a-z]{3,}s|people)\b", after)
        if hyphen:  # "a 6.2-metre telescope": "a how many metres telescope", never fronted (see ``fronted``)
            unit = hyphen.group(1)
            return start, end + len(hyphen.group(0)), f"how many {unit if unit.endswith('s') else unit + 's'}-"
        if noun and noun.group(1) not in NOT_VERBS:
            return start, end + len(noun.group(0)), f"how many {noun.group(1)}"
    return start, end, wh


def _marked(
    sentence: str, span: Span, topic: str, names: tuple[str, ...] = (), split: bool = True
) -> tuple[str, str] | None:
    """(the fact's clause with the fact replaced by a marker, the question words), or None when the fact is in quoted
    speech no one named said or its clause says too little to ask from; a quote a named speaker said is asked as
    its reported clause (``quotes``)."""
    said = reported(sentence, span, names)
    if said is not None:
        sentence, span = said
    start, end, wh = _ask(sentence, span)
    quotes = [m.span() for m in re.finditer(r"[\"\u201c][^\"\u201d]*[\"\u201d]", sentence)]
    if any(a <= start < b for a, b in quotes) or re.search(r"\b(?:said|says|according to)\s+$", sentence[:start]):
        return None  # quoted speech, or who said it (``relations.role_questions`` asks who they are)
    text = sentence[:start] + MARK + sentence[end:]
    text = re.sub(r"[\"\u201c\u201d]", "", text)
    text = re.sub(r"[.!?]+$", "", text.strip())
    text = re.sub(r"\s+today(?=\s)", "", text)  # "X today announced": a question asks "What did X announce?"
    text = own_clause(text, REPORTED) if MARK not in text.split(" that ", 1)[0] else text
    clauses = split_clauses(name_pronouns(text, topic, names))
    at = next((i for i, c in enumerate(clauses) if MARK in c), None)
    if at is None:
        return None
    named = re.fullmatch(rf"(?:the )?{MARK}", clauses[at])
    if named and at == 1 and len(clauses) > 2 and re.match(r"(?:the|a|an) [a-z ]+$", clauses[0], re.I):
        # "The larger boat, the Lumora Grand, carries 410 passengers": which larger boat carries 410 passengers?
        return f"{MARK} {clauses[2]}", "which " + clauses[0].split(" ", 1)[1]
    clause = fact_clause(clauses, at)
    if not clause or clause.strip() == MARK or len(clause.split()) < 3:
        return None
    clause = one_conjunct(clause) if split else clause
    return (clause, wh) if len(clause.split()) >= 3 else None


def _without_apposition(sentence: str, span: Span) -> tuple[str, Span]:
    """``sentence`` without the apposition of the name it opens a release with, when the fact at ``span`` comes after
    it ("Aurora Avionics, a drone maker based in Tallinn, launched the K7 on March 3": the date's clause is "Aurora
    Avionics launched the K7 on March 3", not "Tallinn was launched ...")."""
    found = launch(sentence)
    if found is None or not found.apposition:
        return sentence, span
    cut = f", {found.apposition},"
    at = sentence.find(cut, len(found.subject))
    if at < 0 or span.start < at + len(cut):
        return sentence, span
    return sentence[:at] + sentence[at + len(cut) :], Span(span.start - len(cut), span.text, span.kind)


def fact_sentence(sentence: str, span: Span, topic: str = "", names: tuple[str, ...] = (), split: bool = False) -> str:
    """The clause of ``sentence`` that states the fact at ``span``, with its subject, as a sentence of its own
    ("The Lumora Grand carries 410 passengers and 60 cars."), with ``split`` only the half of a coordination that
    holds the fact ("The Lumora Grand carries 410 passengers."); the sentence itself when no clause holds it.

    The whole clause is the default: the halves alone were each seen half as often, and answered fewer probes
    (docs/results.md)."""
    opening = launch_answer(sentence, span)  # the opening relation's, when it asks for this fact
    if opening:
        return name_pronouns(opening, topic, names)
    if span.kind == "name" and role_questions(sentence, span, names):
        return role_answer(sentence, span, names)
    holder = role_holder(sentence, span, names) if span.kind == "name" else None
    if holder is not None:
        return f"{holder[0]} is {holder[1]}."
    sentence, span = _without_apposition(sentence, span)
    marked = _marked(sentence, span, topic, names, split)
    if marked is None:
        return name_pronouns(sentence, topic, names)
    start, end, _ = _ask(sentence, span)
    text = marked[0].replace(MARK, sentence[start:end])
    text = upper_first(text)
    return text if text.endswith((".", "!", "?")) else text + "."


def _sentence_forms(clause: str, wh: str) -> list[Question]:
    """The cloze and fronted questions of a fact's clause, then the same of the clause trimmed (``trimmed``), then
    the clause asked inside another question (``embedded``)."""
    forms = []
    if wh == "what":  # "The <fact> packs 42 cores": "What packs 42 cores?", not "The what packs ...?"
        clause = re.sub(rf"\b[Tt]he {MARK}", MARK, clause)
    short = trimmed(clause) if wh != "what" else ""  # "Vector engine for what?" asks nothing
    for text, origin in ((clause, ""), (short, "+trimmed")):
        if not text:
            continue
        said = re.sub(rf"\b(?:in|at) {MARK}", MARK, text) if wh == "where" else text  # not "based in where?"
        cloze = said.replace(MARK, wh.rstrip("-"))
        forms.append(Question(upper_first(cloze) + "?", "cloze" + origin))
        front = fronted(text, wh)
        if front:
            forms.append(Question(front, "fronted" + origin))
    inside = embedded(short or clause, wh)
    if inside:
        forms += [Question(form.format(inside), "embedded") for form in EMBEDDINGS]
    related = price_questions(clause, wh) + size_questions(clause, wh)
    related += when_questions(clause, wh) + duration_questions(clause, wh) + education_questions(clause, wh)
    related += team_questions(clause, wh) + amount_questions(clause, wh) + limit_questions(clause, wh)
    related += instrument_questions(clause, wh) + possessed_questions(clause, wh)
    related += [q for q in (active(clause, wh),) if q]
    forms += [Question(text, "relation") for text in related]
    return forms


def fact_questions(
    sentence: str,
    span: Span,
    topic: str = "",
    short: dict[str, str] | None = None,
    names: tuple[str, ...] = (),
    described: dict[str, list[str]] | None = None,
    made: dict[str, str] | None = None,
    codes: dict[str, str] | None = None,
) -> list[Question]:
    """The questions made from ``sentence`` for the fact at ``span`` (see the module's docstring), distinct, in
    order: cloze, fronted, then their full-name (``naming.model_codes``: "the V3" as "the Quarro V3"), short-name,
    described (``described_names``) and reworded variants; ``made``: each company's product (``relations.makers``),
    to ask a role in the company from the product."""
    if _names_number(sentence, span):
        return []
    found = []
    launched = launch_questions(sentence, span)
    if span.kind == "name":  # the opening relation's answer states no apposition: its role is not asked then
        found += [Question(text, "relation") for text in launched or role_questions(sentence, span, names)]
        found += [Question(text, "relation") for text in agent_questions(sentence, span)]
        found += [Question(text, "relation") for text in behind_questions(sentence, span, names, made or {})]
    holder = role_holder(sentence, span, names) if span.kind == "name" and not launched else None
    if holder is not None:  # the role's organisation, asked from the holder: not from the quote around them
        found += [Question(t, "relation") for t in holder_questions(holder, span.text, _ask(sentence, span)[2])]
    marked = _marked(*_without_apposition(sentence, span), topic, names) if holder is None else None
    if marked is not None:
        found += _sentence_forms(*marked)
    named = [Question(in_full(q.text, codes or {}), f"{q.origin}+named") for q in found]  # "the V3": "the Quarro V3"
    found += [n for n, q in zip(named, list(found), strict=True) if n.text != q.text]
    for q in list(found):
        for name, alias in (short or {}).items():
            if re.search(rf"\b{re.escape(name)}\b", q.text) and name != span.text:
                found.append(Question(re.sub(rf"\b{re.escape(name)}\b", alias, q.text), f"{q.origin}+short"))
    for q in [q for q in found if "+" not in q.origin.removesuffix("+named")]:
        for name, said in (described or {}).items():
            if name in span.text or not re.search(rf"\b{re.escape(name)}\b", q.text):
                continue
            for alias in said:  # "How many kg does the Nimbus 12 weigh?": "... does the compact Nimbus weigh?"
                # "the compact Nimbus 12" as "the smaller Nimbus", not "the compact the smaller Nimbus"
                text = re.sub(rf"\b(?:[Tt]he )?(?:{_DESCRIBING} )?{re.escape(name)}\b", alias, q.text, count=1)
                found.append(Question(upper_first(text), f"{q.origin}+described"))
    for q in list(found):
        found += [Question(v, f"{q.origin}+reworded") for v in reworded(q.text)]
    seen, out = set(), []
    for q in found:
        key = q.text.lower()
        if key not in seen and 4 <= len(q.text.split()) <= 30:
            seen.add(key)
            out.append(q)
    return out
