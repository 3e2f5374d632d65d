"""The clause of a sentence that states a fact, as a sentence of its own with its subject: an apposition said of
the name before it, a participle of the noun before it, a list's item with the verb the list shares, a predicate
after "and" with the sentence's subject, a phrase the sentence opens with said at its end. The fact is a marker
(``english.MARK``) in the text these rules read; ``questions`` asks it and answers it."""

from __future__ import annotations

import re

from .conjuncts import AMOUNT
from .english import AUX, IRREGULAR_PAST, MARK, PREPOSITIONS, upper_first, verb_at
from .facts import MONTHS, name_spans

# A sentence's opening date without its comma ("On July 26, 2023 AWS announced ...", "In 2019 Lena Marek ...").
_DATE = rf"(?:{MARK}|(?:{MONTHS}) \d{{1,2}}(?:, \d{{4}})?|\d{{4}})"
_DATED = rf"^((?:On|In|Since|Until|By) {_DATE})(?= (?:[A-Z{MARK}]|(?:the|an?) ))"


def _word_lists(pieces: list[str]) -> list[str]:
    """``pieces`` with a list of single lower-case words that the commas cut joined again ("helps organizations
    match", "link and enhance records" -> "helps organizations match, link and enhance records"): a piece that ends
    with a lower-case word, then single words, then a piece that opens with "<word> and|or <word>"."""
    if not pieces:
        return []
    out, current, k = [], pieces[0], 1
    while k < len(pieces):
        j = k
        while j < len(pieces) and re.fullmatch(r"[a-z]+", pieces[j]):
            j += 1
        ends_in_word = re.search(r"(?:^|\s)[a-z]+$", current)
        if (
            ends_in_word
            and j < len(pieces)
            and re.match(r"[a-z]+ (?:and|or) [a-z]+" if j == k else r"(?:[a-z]+ )?(?:and|or) [a-z]+", pieces[j])
        ):
            current, k = ", ".join([current, *pieces[k : j + 1]]), j + 1
        else:
            out.append(current)
            current, k = pieces[k], k + 1
    return [*out, current]


def split_clauses(text: str) -> list[str]:
    """``text`` split at ", " (not inside a number, before a date's year, or in a list of single words: "match, link
    and enhance records"), after a comma is put after a date it opens with ("On July 26, 2023 AWS announced");
    only the part between the semicolons that holds the marker, which is a sentence of its own."""
    parts = [p for p in re.split(r";\s+", text) if p.strip()]
    part = next((p for p in parts if MARK in p), parts[0] if parts else "")
    colon = part.split(": ", 1)  # "The new chip is also more frugal: the V4 draws ...": the clause after it
    if len(colon) == 2 and MARK in colon[1] and verb_at(colon[1].split()) is not None:
        part = colon[1]
    part = re.sub(_DATED, r"\1,", upper_first(part))  # "On July 26, 2023 AWS announced ...": a phrase of its own
    return _word_lists([c.strip() for c in re.split(r",\s+(?!\d{4}\b)", part) if c.strip()])


def _subject_of(clauses: list[str], at: int) -> str:
    """The subject for clause ``at`` when it names none itself: the name an apposition gives the first clause, with
    its article, when the clause opens with a verb ("The larger boat, the Lumora Grand, carries ...": "the Lumora
    Grand"), else the first clause ("The city plans a second line, the Hill Line, for 2028": "The city plans a second
    line")."""
    first = clauses[0]
    if at >= 2 and not name_spans(first) and re.fullmatch(r"the [A-Z][\w.\-/ &]+", clauses[1]):
        if _verb_first(re.sub(r"^(?:and|but)\s+", "", clauses[at])):  # not "..., the Hill Line, for 2028"
            return clauses[1]
    return first


def _last_noun(text: str) -> str:
    """The last noun phrase of ``text``, from its last article or name on ("the comet C/2031 Brisk", "a survey of
    nearby brown dwarfs" as "the survey ..."), for a participle or relative clause that follows it."""
    found = list(re.finditer(r"\b(?:the|a|an)\s", text))
    name = _last_name(text)
    at = found[-1].start() if found else -1
    if name and text.rfind(name) > at:
        return name
    if at < 0:
        return ""
    noun = text[at:]
    return "the " + noun.split(" ", 1)[1] if not noun.startswith("the ") else noun


def _last_name(text: str) -> str:
    names = name_spans(text, specific=False)
    return names[-1].text if names else ""


_LISTING = frozenset("has have had offers includes features provides supports delivers comes".split())


def _list_head(first: str) -> str:
    """The subject and verb a list's items share ("Each p5.48xlarge instance has 8 GPUs, ..., 2 TB of system
    memory": "Each p5.48xlarge instance has"), or "" when the first clause does not open a list of what one has."""
    words = first.split()
    found = verb_at(words)
    if found is None or words[found[0]].lower() not in _LISTING:
        return ""
    return " ".join(words[: found[0] + 1] + (["with"] if words[found[0]].lower() == "comes" else []))


_NAME = r"(?:[A-Z][\w.&-]*(?: [A-Z0-9][\w.&-]*)*)"


def _named_item(clauses: list[str], at: int) -> str:
    """Clause ``at`` as an item of a list of names whose first the first clause ends with, said in its place and
    without the other name "and" joins it to ("Bedrock gives access to models from AI21 Labs, Anthropic, <fact> and
    Amazon through a single API": "Bedrock gives access to models from <fact> through a single API"; a middle item
    without what follows the last: "... from <fact>"), else ""."""
    clause = clauses[at]
    if ":" in clauses[0] or not all(re.fullmatch(_NAME, c) for c in clauses[1:at]):
        return ""  # "options: the vector engine for X, Y and Z": the items are not the names alone
    if not re.match(rf"(?:{MARK}|{_NAME} and {MARK})(?: and {_NAME})?(?: [a-z].*)?$", clause):
        return ""
    rest = clauses[at + 1 :]
    end = next((k for k, c in enumerate(rest) if not re.fullmatch(_NAME, c)), len(rest))
    last = end < len(rest) and re.match(rf"(?:{_NAME} )?(?:and|or) {_NAME}", rest[end])  # "..., and Tamsin Works"
    if " and " not in clause and not last:
        return ""  # "given by Lena Marek, Norvik": a name and its apposition, no list
    names = name_spans(clauses[0], specific=False)
    if not names or names[-1].start + len(names[-1].text) != len(clauses[0]):
        return ""
    clause = re.sub(rf"^{_NAME} and (?={MARK})", "", clause)
    clause = re.sub(rf"(?<={MARK}) and {_NAME}\b", "", clause)
    return clauses[0][: names[-1].start] + clause


def _clause_with_subject(clauses: list[str], at: int) -> str:
    """Clause ``at`` as a sentence with its subject: an apposition ("a maker of ...", "the chief executive of ...")
    said of the name before it, a participle ("photographed on ...") of the noun before it, a predicate ("carries
    410 passengers", "and runs ...") of the sentence's subject."""
    clause = clauses[at]
    item = clause.startswith(MARK) or re.match(rf"{AMOUNT} and {MARK}", clause)  # or the list's last: "2 TB ... and"
    if at and verb_at(clause.split()) is None:
        listed = _list_head(clauses[0]) if item else ""
        if listed:
            return f"{listed} {clause}"
        named = _named_item(clauses, at)
        if named:
            return named
    if at == 0 or clause.startswith(MARK) or clause[0].isupper():
        return clause
    if re.match(r"(?:against|versus|vs\.|compared (?:with|to)) ", clause):
        return ""  # "takes 35 minutes, against 50 minutes on the diesel ferries": a value compared, no clause
    previous = clauses[at - 1]
    first_word = clause.split()[0].lower()
    if first_word in ("a", "an", "the"):
        name = _last_name(previous) if at > 1 or len(previous.split()) > 1 else previous
        # "with the Halden Telescope, a ...": the article the sentence gives it (not "of the Arts", a name's tail),
        # and the name's kind after it ("opened the Lumora line, an electric ferry service": "The Lumora line is")
        kind = r"((?: [a-z]{3,}){0,2})$"
        said = re.search(rf"(?:^|(?<!\bof) )[Tt]he {re.escape(name)}{kind}", previous) if name else None
        if said and all(_kind_word(w) for w in said.group(1).split()):
            name = f"The {name}{said.group(1)}"
        return f"{name} is {clause}" if name else ""
    if first_word in IRREGULAR_PAST or first_word.endswith("ed"):
        noun = _last_noun(previous)
        return f"{noun} was {clause}" if noun else ""
    if first_word == "having" and " " in clause:  # "..., having trained in design at X": the subject trained
        clause = clause.split(" ", 1)[1]
    if first_word in ("which", "who", "that"):  # "..., which has a 2.1-metre mirror"
        if re.match(rf"\S+\s+(?:the\s|a\s|an\s|[A-Z]|{MARK})", clause):
            return ""  # "..., which Corvane chose": what it says is of the noun before, which is not its subject
        noun = _last_noun(previous)
        return f"{noun} {clause.split(' ', 1)[1]}" if noun and " " in clause else ""
    relative = re.match(r"^(?:of which|in which|where|whereas|while|but|and)\s+(?=(?:the|a|an|[A-Z]\w*)\s)", clause)
    if relative:  # "..., of which the regional government paid 30 million": a clause with its own subject
        clause = clause[relative.end() :]
        return upper_first(clause)
    compared = re.match(rf"^(?:up|down) from ({MARK}(?: [a-z]+)?) (?:in|on|for) ((?:the )?[A-Z].*)$", clause)
    if compared:  # "The V4 packs 42 cores, up from 38 cores in the V3": the V3 packs 38 cores
        words = _subject_of(clauses, at).split()
        verb = verb_at(words)
        if verb is None or verb[1] == "aux":
            return ""
        other = compared.group(2)
        return f"{other[0].upper()}{other[1:]} {words[verb[0]]} {compared.group(1)}"
    clause = re.sub(r"^(?:and|but|while|so)\s+", "", clause)
    if clause and (clause[0].isupper() or clause.startswith(MARK)):  # its own subject, the fact's name included
        return clause
    subject = _subject_of(clauses, at)
    verb = verb_at(subject.split())
    if verb and _verb_first(clause):  # "Lena Marek joined Corvane in 2019, ..., and runs a studio": "Lena Marek runs"
        subject = " ".join(subject.split()[: verb[0]])
    return f"{subject} {clause}"


def kind_noun(word: str) -> bool:
    """Whether a lower-case word after a name can be the name's kind ("line", "survey"), not a verb or a joint."""
    return word not in AUX | PREPOSITIONS | {"and", "or"} and not word.endswith("ed")


def _kind_word(word: str) -> bool:
    """``kind_noun``, and neither a time, an adverb nor a verb: "the Vell line twice, a move ..." names no kind."""
    return kind_noun(word) and word not in _NOT_KIND and not word.endswith("ly") and verb_at(["X", word]) is None


_NOT_KIND = frozenset("last this next year month week today yesterday now then twice once again too also".split())


def _verb_first(clause: str) -> bool:
    """Whether ``clause`` opens with a verb of its own ("runs a studio", "weighs 19 tonnes"), not a phrase."""
    word = clause.split(" ", 1)[0].lower()
    return word in AUX or word in IRREGULAR_PAST or verb_at(["X", word, *clause.split()[1:2]]) is not None


# what a page reports ("AWS announced that <clause>"): the question asks the clause itself
REPORTED = r"^[A-Z][\w.&-]*(?: [A-Z][\w.&-]*)* (?:announced|said|says|reported|confirmed|noted) that (?=\S)"
_SUBORDINATE = r"^(?:While|When|Whereas|Although|Though|Because|Once|As soon as) (?=\S)"


def own_clause(text: str, opener: str) -> str:
    """``text`` without the ``opener`` it begins with ("AWS announced that", "While"), when what follows is a clause
    of its own: a subject that is a name (or the fact) or opens with an article, and a verb ("that figure", "that it
    will ..." and "Once the largest operator, ..." keep theirs); else ``text``."""
    found = re.match(opener, text)
    rest = text[found.end() :] if found else ""
    if not re.match(rf"(?:[Tt]he|[Aa]n?) |[A-Z](?!t |hey )|{MARK}", rest) or verb_at(rest.split()) is None:
        return text
    return upper_first(rest)


def _opening_phrase(clauses: list[str], at: int) -> str:
    """The sentence's main clause with the preposition's phrase it opens with said at its end ("At the AWS Summit on
    <fact>, AWS announced P5 instances" -> "AWS announced P5 instances at the AWS Summit on <fact>"; "In Norway, the
    Arlo 5 costs <fact>" -> "The Arlo 5 costs <fact> in Norway"), so that the fact is asked of what happened there,
    and as the page qualifies it; else "". Only for a sentence that ``_opens_with_phrase``, its fact in clause
    ``at`` 0 or 1 (``fact_clause`` checks both)."""
    first, main = clauses[0].split(), clauses[1]
    if verb_at(main.split()) is None or main[0].isdigit() or (main[0].islower() and _verb_first(main)):
        return ""  # "In Oslo, built by Vessa, ...", "Of the 40 boats, 12 are ...": no clause of its own
    # "In addition", "For example": no qualifier of the fact; "At the AWS Summit in ... on July 26, 2023": too long
    adverbial = first[0].lower() == "of" or re.fullmatch(_DISCOURSE, clauses[0], re.I) is not None
    if at == 1 and (len(first) > 4 or adverbial):
        return upper_first(main)
    return "" if adverbial else f"{upper_first(main)} {clauses[0][0].lower()}{clauses[0][1:]}"


# Phrases that open a sentence to link it to the one before, not to qualify its facts.
_DISCOURSE = (
    r"(?:in (?:addition|contrast|short|total|particular|fact|general|turn|the meantime|comparison)|for (?:example|"
    r"instance)|by contrast|on (?:average|the other hand)|as a result|at the same time|after all|above all|of course)"
)


def _opens_with_phrase(clauses: list[str]) -> bool:
    """Whether the sentence opens with a preposition's phrase of its own, before a comma ("At launch, ...")."""
    first = clauses[0].split()
    if len(clauses) < 2 or first[0].lower() not in PREPOSITIONS:
        return False
    return re.fullmatch(rf"\w+ {_DATE}", clauses[0]) is not None or verb_at(first) is None  # "On May 4": no "may"


def fact_clause(clauses: list[str], at: int) -> str:
    """Clause ``at`` of a sentence's ``clauses`` as a sentence with its subject ("" when it has none to give)."""
    if _opens_with_phrase(clauses):
        if at >= 2:  # "On May 4, 2024, the Q9, a chip for phones, drew <fact>"
            return fact_clause(clauses[1:], at - 1)
        opening = _opening_phrase(clauses, at)
        if opening or at == 0:  # "Of the <fact> boats, 12 are electric": a phrase alone asks nothing
            return opening
    clause = _clause_with_subject(clauses, at)
    if at == 0 and len(clauses) > 1:  # "While a data engineer writes ..., ..."
        clause = own_clause(clause, _SUBORDINATE)
    described = _DESCRIBED_AS.match(clause)
    if described and MARK in described.group("rest"):
        return f"{described.group('x')} {described.group('rest')}"
    relative = _OBJECT_RELATIVE.search(clause)
    if relative and MARK in relative.group("rest"):  # the fact is the relative clause's, not the sentence's
        return f"{relative.group('who')} {relative.group('verb')} {relative.group('thing')} {relative.group('rest')}"
    return clause


# "... the Quarro V3 laptop processor that Halvren Semiconductor launched in <fact>": Halvren launched the V3 then
_OBJECT_RELATIVE = re.compile(
    r"\b(?P<thing>(?:the|an?) (?:[\w.-]+ ){0,5}?[\w.-]+) (?:that|which) "
    r"(?P<who>[A-Z][\w.&-]*(?: [A-Z][\w.&-]*)*) (?P<verb>[a-z]+ed) (?P<rest>.+)$"
)


# "X is an electric ferry service that links <fact> with Y": what X does, asked of X ("X links <fact> with Y")
# (not "a rival to the chip that draws ...", "a startup that investors valued at ...": another's verb)
_DESCRIBED_AS = re.compile(
    rf"^(?P<x>.+?) (?:is|was) an? (?:(?!(?:{'|'.join(sorted(PREPOSITIONS))})\b)[\w-]+ ){{1,4}}?(?:that|which) "
    r"(?P<rest>[a-z]+(?:s|ed) (?![a-z]+ed\b).*)$"
)
