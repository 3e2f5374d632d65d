"""The other names a page gives a thing, for questions that name it as a reader would: its short name ("the T2" for
"the Tidewell T2", where no other name shares the word) and, for one of two look-alike models, how the page describes
it ("the compact Nimbus" and "the smaller Nimbus" for "the compact Nimbus 12" beside "the larger Nimbus 16").
"""

from __future__ import annotations

import re

ORG_WORDS = frozenset(
    "Inc Ltd Corp Corporation Company Group Systems Labs Technologies Transit Marine Metering Motors Airlines "
    "Bank Energy Networks Software Solutions Industries Partners Holdings Foundation Agency Council Ministry".split()
)


def short_names(names: list[str]) -> dict[str, str]:
    """A short name for each name that has one telling it apart from every other name of the pages: its word with a
    digit ("T2" for "Tidewell T2"), or the first word of a company's name that no other name uses ("Orvanta" for
    "Orvanta Metering")."""
    words: dict[str, int] = {}
    for name in set(names):
        for word in set(name.split()):
            words[word] = words.get(word, 0) + 1
    short = {}
    for name in set(names):
        parts = name.split()
        if len(parts) < 2:
            continue
        digits = [w for w in parts if re.search(r"\d", w) and words[w] == 1 and len(w) >= 2]
        if digits:
            short[name] = digits[-1]
        elif parts[-1] in ORG_WORDS and words[parts[0]] == 1 and len(parts[0]) >= 4:
            short[name] = parts[0]
    return short


# A page's adjective for one of two look-alike names, and another way to say it ("the compact Nimbus 12": "the
# smaller Nimbus").
_SAID_OTHERWISE = {
    "compact": "smaller",
    "small": "smaller",
    "smaller": "compact",
    "large": "larger",
    "larger": "bigger",
    "big": "bigger",
    "bigger": "larger",
    "old": "older",
    "older": "previous",
    "new": "newer",
    "newer": "latest",
    "latest": "newest",
    "cheap": "cheaper",
    "cheaper": "less expensive",
}
DESCRIBING = frozenset(_SAID_OTHERWISE) | frozenset(w for v in _SAID_OTHERWISE.values() for w in v.split())
MODEL = re.compile(r"\b([A-Z][a-z][\w-]*) [A-Z]?\d[\w.]*\b")  # a product and its model number: "Nimbus 12"
_NOT_DESCRIBING = frozenset("first second third last same other whole entire next only".split())


def described_names(texts: list[str]) -> dict[str, list[str]]:
    """For a name that shares its first word with another name of the pages ("Nimbus 12", "Nimbus 16"), the ways the
    pages describe it by that word ("the compact Nimbus 12": "the compact Nimbus", "the smaller Nimbus"), so that a
    question can ask about it as a reader does who remembers which one, not its number."""
    families: dict[str, set[str]] = {}
    for text in texts:
        for m in MODEL.finditer(text):
            families.setdefault(m.group(1), set()).add(m.group(0))
    found: dict[str, list[str]] = {}
    for text in texts:
        for m in re.finditer(rf"\b[Tt]he ([a-z]{{3,}}) ({MODEL.pattern})", text):
            adjective, family, name = m.group(1), m.group(3), m.group(2)
            if adjective in _NOT_DESCRIBING or len(families.get(family, ())) < 2:
                continue
            said = [f"the {adjective} {family}"]
            if adjective in _SAID_OTHERWISE:
                said.append(f"the {_SAID_OTHERWISE[adjective]} {family}")
            found[name] = list(dict.fromkeys([*found.get(name, []), *said]))
    return found


APPOSITION_WORDS = 16  # a longer description makes every question that says it too long to ask
_APPOSITION = re.compile(
    r"\b((?:[A-Z][\w-]*(?: &)? )*[A-Z][\w-]*(?: [a-z]{3,})?), an? ([a-z0-9][\w.-]*(?: [\w-]+)*?)(?=[,;:]|\.(?!\d)|$)"
)


def apposition_names(texts: list[str]) -> dict[str, list[str]]:
    """For a name the page describes in an apposition ("the Lumora line, an electric ferry service that links the
    harbour town of Pellisk with the island of Varnholm"), that description as "the ..." ("the electric ferry
    service that links ..."), so that a question can ask about the thing as a reader who knows what it is but not
    its name does ("Which company runs the ferry service between Pellisk and Varnholm?")."""
    found: dict[str, list[str]] = {}
    for text in texts:
        for m in _APPOSITION.finditer(" ".join(text.split())):
            name, description = m.group(1), m.group(2)
            if len(description.split()) > APPOSITION_WORDS or name.split()[0] in ("The", "A", "An"):
                continue
            said = [f"the {description}", *[f"the {d}" for d in [between(description)] if d]]
            found[name] = list(dict.fromkeys([*found.get(name, []), *said]))
    return found


_LINKS = re.compile(
    r"^(?P<what>[a-z][\w -]*?) (?:that|which) (?:links|connects|joins) "
    r"(?P<one>[^,;]+?) (?:with|to|and) (?P<two>[^,;]+)$"
)
_PLACE = re.compile(r"[A-Z][\w-]*(?: [A-Z][\w-]*)*$")


def between(description: str) -> str:
    """A description of what links two places said as a reader says it: "electric ferry service that links the
    harbour town of Pellisk with the island of Varnholm" as "electric ferry service between Pellisk and Varnholm";
    "" when it links no two named places."""
    found = _LINKS.match(description)
    sides = [found.group("one"), found.group("two")] if found else []
    places = [_PLACE.search(side) for side in sides]
    if not found or not all(places):
        return ""
    one, two = (side if side == f"the {m.group(0)}" else m.group(0) for side, m in zip(sides, places, strict=True))
    return f"{found.group('what')} between {one} and {two}"  # "the Old Port" keeps its article


_OPENERS = frozenset("the a an its this that these their our his her".split())  # "The V4 packs": no model's name


def model_codes(texts: list[str]) -> dict[str, str]:
    """Each model code of the pages ("V3", "T2") and the one full name it is the code of ("Quarro V3", "Tidewell
    T2"), for the sentences that say the code alone ("the V3 peaked at 3.2 GHz"): a question or answer given the full
    name tells the model from its look-alike as the reader's question does. A code two names share is left out."""
    found: dict[str, set[str]] = {}
    for text in texts:
        for m in MODEL.finditer(text):
            name = m.group(0).rstrip(".")  # "... the Quarro V4." ends a sentence
            code = name.split(" ", 1)[1]
            if re.search(r"[A-Za-z]", code) and name.split()[0].lower() not in _OPENERS:
                found.setdefault(code, set()).add(name)
    return {code: next(iter(names)) for code, names in found.items() if len(names) == 1}


def in_full(text: str, codes: dict[str, str]) -> str:
    """``text`` with each model code it says alone given its full name ("The V3 peaked at 3.2 GHz": "The Quarro V3
    peaked at 3.2 GHz"); a text that already says the full name is left as it is."""
    for code, name in codes.items():
        if name not in text:
            text = re.sub(rf"(?<![\w-]){re.escape(code)}\b", name, text)
    return text
