"""Facts in text: sentences, the dates, numbers and names a sentence states, and which of them questions ask for.

Shared by evaluation (automatic probes hold one of them out) and augmentation (questions ask for one, paraphrases
must keep them all). Plain regular expressions for English text, no model: deterministic and fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
DATE = re.compile(
    rf"\b(?:(?:{MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,\s*\d{{4}})?|\d{{1,2}}\s+(?:{MONTHS})(?:\s+\d{{4}})?"
    rf"|(?:{MONTHS})\s+\d{{4}})\b"
)
_MAGNITUDE = r"(?:\s(?:thousand|million|billion|trillion)\b)?"
_UNIT = (
    r"(?:\s?%|\s(?:percent|times|[kKMGTP]i?B|[kMGT]bps|[kMG]Hz|ms|hours|days|years|minutes|seconds|weeks|months"
    r"|euros?|dollars?|pounds|yen|francs|kroner|(?:kilo|mega|giga)?watt(?:-hours?)?s?|[kMG]Wh?|metres?|meters?|km"
    r"|kilometres?|kilometers?|miles|kg|kilograms?|grams?|tonnes?|tons?|litres?|liters?|degrees)\b)"
)
# A free-standing number (not part of "p5.48xlarge", "H100" or "3rd"), with its magnitude ("88 million") and a unit
# when one follows.
NUMBER = re.compile(rf"(?<![\w.\-/:])\d+(?:[.,]\d+)*(?![\w.:]\w|\w){_MAGNITUDE}{_UNIT}?")
# A time of day ("5:40", "17:05", "9:30 am").
TIME = re.compile(r"(?<![\w.:])\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?(?![\w:])")
_NAME_WORD = r"[A-Z][\w.\-/]*[\w]|[A-Z]"
NAME = re.compile(rf"(?<![\w.\-/])(?:{_NAME_WORD})(?:(?:\s&)?\s(?:{_NAME_WORD}))*")
_SENTENCE_END = re.compile(r"(?:(?<=[^A-Z\s][.!?])|(?<=[A-Z]{2}[.!?]))\s+(?=[\"'(\[]?[A-Z0-9])")
MAX_NAME_WORDS = 3
# Capitalized only because they open a sentence: not names.
_OPENERS = frozenset(
    "A An The This That These Those Each Every At On In Of For With While When Where After Before As By It Its "
    "They Their There Our We You".split()
)
# Words that open a sentence before a comma and are no name ("Earlier, a trial ran ...").
_OPENING_ADVERBS = frozenset(
    "Today Yesterday Tomorrow Earlier Later Now Then Here Meanwhile Overall Separately Finally Also However "
    "Instead Still Next Last First Second Third Again Soon Recently".split()
)


def opening_adverb(word: str) -> bool:
    """Whether ``word``, a sentence's capitalized first word, is an adverb ("Meanwhile", "Recently"), not a name."""
    return word in _OPENING_ADVERBS or (word.endswith("ly") and word[:1].isupper() and word[1:].islower())


@dataclass(frozen=True)
class Span:
    """A fact a sentence states: where it starts, its text, and its kind (date, number or name)."""

    start: int
    text: str
    kind: str


def sentences(paragraph: str) -> list[str]:
    """A paragraph's sentences (line breaks inside it are spaces)."""
    return _SENTENCE_END.split(" ".join(paragraph.split()))


def paragraphs(text: str) -> list[str]:
    """A document's paragraphs (separated by blank lines), white space collapsed."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text or "") if p.strip()]


def numeric_spans(sentence: str) -> list[Span]:
    """Dates and times of day, then free-standing numbers with their units, in order of position."""
    dates = [Span(m.start(), m.group(), "date") for m in DATE.finditer(sentence)]
    dates += [Span(m.start(), m.group(), "time") for m in TIME.finditer(sentence)]
    inside = [(d.start, d.start + len(d.text)) for d in dates]
    numbers = [
        Span(m.start(), m.group(), "number")
        for m in NUMBER.finditer(sentence)
        if not any(s <= m.start() < e for s, e in inside)
    ]
    return sorted(dates + numbers, key=lambda s: s.start)


def is_specific(name: str) -> bool:
    """Whether a name is specific enough to ask about: two words or more, or a digit or inner capital ("Nimbus 12",
    "iPhone"; not "AI" or "Bedrock" alone)."""
    return len(name.split()) >= 2 or bool(re.search(r"\d|[a-z][A-Z]", name))


def name_spans(sentence: str, specific: bool = True, strip_openers: bool = True) -> list[Span]:
    """Capitalized names (at most MAX_NAME_WORDS words). ``specific`` keeps names of two words or more, or with a
    digit or inner capital ("AI", "Bedrock" alone are too vague to ask for); ``strip_openers`` drops a leading
    word capitalized only because it opens the sentence ("Each", "The")."""
    found = []
    for m in NAME.finditer(sentence):
        words = m.group().split()
        start = m.start()
        while strip_openers and words and words[0] in _OPENERS:
            start += len(words[0]) + 1
            words = words[1:]
        span = " ".join(words if len(words) <= MAX_NAME_WORDS else words[:2]).rstrip(".")
        if not span:
            continue
        if specific and not is_specific(span):
            continue
        found.append(Span(start, span, "name"))
    return found


def name_words(text: str) -> dict[str, set[str]]:
    """Each specific name a text states (``name_spans``), with its words of three letters or more, lower-cased: a
    rewrite keeps the name when it keeps one of them ("Curie" for "Marie Curie")."""
    return {
        span.text: {w.lower() for w in re.findall(r"[\w-]{3,}", span.text)} for span in name_spans(text) if span.text
    }


def words_of(text: str) -> set[str]:
    """A text's words of three letters or more, lower-cased (what ``name_words`` are looked up in)."""
    return {w.lower() for w in re.findall(r"[\w-]{3,}", text)}


def key_terms(text: str) -> set[str]:
    """The numbers and specific names a text states, normalized, for checking that a rewrite kept them."""
    from .matching import normalize_answer

    terms = {normalize_answer(s.text) for s in numeric_spans(text)}
    for span in name_spans(text):
        terms |= {normalize_answer(w) for w in span.text.split() if re.search(r"\d|[A-Z].*[A-Z]", w)}
    return {t for t in terms if t}


def page_names(texts: list[str]) -> list[str]:
    """The specific names of ``texts`` (what ``short_names`` tells apart)."""
    return [s.text for t in texts for s in name_spans(t)]


def sentence_topics(sentences: list[str], fallback: str = "") -> list[str]:
    """For each sentence, what its "it"/"its" stands for: the subject of the sentence before it when a name
    ("The Quarro V4 packs 42 cores, up from 38 in the Quarro V3. Its clock ..." is the V4's), a later name when it
    is introduced with an apposition ("... with the Halden Telescope, a 6.2-metre telescope. Its first target ..."),
    the same as before when the sentence is about a thing it describes ("The line was built by Castellan Works. Its
    trams ..."), else the last specific name of the sentences before it (a page names a thing, then says "it"), else
    ``fallback`` (the page's subject)."""
    topics, last = [], fallback
    for sentence in sentences:
        topics.append(last)
        names = [s for s in name_spans(sentence) if not re.search(r"\d{4}", s.text) or "/" in s.text]
        if names:
            subject = names[0].start == 0 or re.fullmatch(r"the ", sentence[: names[0].start], re.I)
            introduced = re.match(r",\s+(?:a|an)\s", sentence[names[-1].start + len(names[-1].text) :])
            described = re.match(r"The [a-z]", sentence)  # "The line was built by X": still about the line
            if introduced or (subject and not described):
                last = names[-1].text if introduced else names[0].text
            elif not described:
                last = names[-1].text
    return topics


_PERSON_AFTER = re.compile(
    r"^,?\s+(?:is|was)?\s*(?:the\s+)?(?:chief|CEO|founder|head|director|president|\w+ architect)"
)


def person_named(sentence: str) -> str:
    """The person a sentence names with a role ("Lena Marsh is the chief architect ...", "said Ilse Marrakov, chief
    executive of ...": what a following "she" or "he" stands for), or ""."""
    for span in name_spans(sentence):
        after, before = sentence[span.start + len(span.text) :], sentence[: span.start]
        if len(span.text.split()) == 2 and (_PERSON_AFTER.match(after) or re.search(r"\bsaid\s+$", before)):
            return span.text
    return ""


def with_person(sentence: str, person: str) -> str:
    """``sentence`` with "she"/"he" as ``person`` and "her"/"his" as their possessive, when it opens with "She" or
    "He" (a sentence about someone the one before named)."""
    if not person or not re.match(r"(?:She|He)\s", sentence):
        return sentence
    sentence = re.sub(r"\b(?:[Ss]he|[Hh]e)\b", person, sentence)
    return re.sub(r"\b(?:[Hh]er|[Hh]is)\b(?=\s+[a-z])", f"{person}'s", sentence)


# Common nouns written in capitals ("GPU instances", "generative AI", "a single API"): words of the language, not
# facts of a page, so no question asks for them; with a plural "s" or a lower-case ending ("GPU-based") too.
_COMMON_ACRONYMS = frozenset(
    "AI API CPU GPU TPU NPU RAM ROM SSD HDD NVMe SQL HTTP HTTPS URL USB LED LCD OLED PDF CSV JSON XML HTML CSS "
    "TCP UDP DNS VPN UI UX SDK IDE LLM GPS IoT SaaS PaaS IaaS VR TV PC CEO CTO CFO COO PhD".split()
)


def _common_acronym(name: str) -> bool:
    """Whether a one-word name is a common noun in capitals ("GPUs", "AI", "GPU-based"; not "NASA", "USB-C" or
    "ML-Agents")."""
    word = re.sub(r"-[a-z]+$", "", name)
    return " " not in name and (word in _COMMON_ACRONYMS or (word.endswith("s") and word[:-1] in _COMMON_ACRONYMS))


def _with_initials(sentence: str, spans: list[Span]) -> list[Span]:
    """Names written with an initial as one name ("N. Virginia", "J. Okafor"), not an "N" and a "Virginia" (a name
    that ends in a letter, "Gate B.", may end its sentence: it is left as it is)."""
    joined: list[Span] = []
    for span in spans:
        last = joined[-1] if joined else None
        if last and re.fullmatch(r"[A-Z]", last.text) and sentence[last.start + 1 : span.start] == ". ":
            joined[-1] = Span(last.start, f"{last.text}. {span.text}", "name")
        else:
            joined.append(span)
    return joined


def asked_spans(sentence: str) -> list[Span]:
    """The facts of a sentence that questions ask for, in order, each once: its dates, times and numbers, its
    specific names, and the one-word names inside it ("Brennholt"; not a date's month, a title such as "Dr", the
    "Nimbus" of "Nimbus 12", or a common noun in capitals such as "GPU"); a name with an initial whole ("N.
    Virginia")."""
    numeric = numeric_spans(sentence)
    inside = [(s.start, s.start + len(s.text)) for s in numeric]
    found, seen = [], set()
    for span in [*numeric, *_with_initials(sentence, name_spans(sentence, specific=False))]:
        end = span.start + len(span.text)
        if span.kind == "name":
            if any(a <= span.start < b for a, b in inside) or re.match(r"\s\d", sentence[end:]):
                continue
            if span.text in ("Dr", "Mr", "Mrs", "Ms", "Prof", "St") or span.text in _OPENERS:
                continue
            if " " not in span.text and not sentence[: span.start].strip(" \"'\u201c\u2018("):
                if not re.match(r",\s+(?:a|an)\s[^,;.]+,", sentence[end:]) or opening_adverb(span.text):
                    continue  # a sentence's capitalized first word, or a quote's (a name when an apposition follows)
            if _common_acronym(span.text):
                continue
        if span.text.lower() not in seen:
            seen.add(span.text.lower())
            found.append(span)
    return found
