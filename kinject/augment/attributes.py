"""Questions of an attribute stated in a fact's clause, asked the ways readers ask them: a price ("How much does the
Tidewell T2 cost?"), a sale date, how long a thing lasts or a trip takes, where a person studied, the size of a
person's group, a length said as a size, an amount of what a thing has ("How much system memory ..."), the most
a thing takes ("How many dimensions per vector ..."), what a thing is done with ("Which schema do developers use
..."), an attribute said as a thing's own ("What was the first target of the Halden Telescope?"). Each takes the
clause with the fact as its marker and the fact's question words, and returns [] when the clause is not of its
kind."""

from __future__ import annotations

import re

from .english import DETERMINERS, EMBEDDINGS, MARK, OF_WHAT, PREPOSITIONS, base_form, upper_first, with_relative
from .facts import name_spans, opening_adverb
from .naming import MODEL

_MONEY = re.compile(
    r"^how many (?:(?:thousand|million|billion) )?(?:euros|dollars|pounds|francs|yen|kronor|krona|crowns|rupees|yuan)$"
)
_PRICED = re.compile(rf"\b(?:costs?|priced at|for) [$\u20ac\u00a3]?{MARK}")  # "costs", "sells for", "can order it for"


def price_questions(clause: str, wh: str) -> list[str]:
    """What the named product of ``clause`` costs, when the fact (its marker) is the price it sells for; [] when the
    clause names no product or the money is not its price ("the government paid 30 million")."""
    if not _MONEY.match(wh) or not _PRICED.search(clause):
        return []
    said = _cost_questions(clause)  # a thing with no product name of its own, "the project of the Halden Telescope"
    if said:
        return said
    before = clause.split(MARK)[0]
    product = [(s.start, s.text) for s in name_spans(before) if re.search(r"\d|\s", s.text)]
    product += [(m.start(), m.group()) for m in MODEL.finditer(before)]  # "Nimbus 12": no name_spans name
    if not product:
        return []
    name = max(product)[1]
    if (
        re.search(rf"\bcost [$\u20ac\u00a3]?{MARK}", clause) and not _does(name)[0] == "do"
    ):  # "The line cost ...": past
        return _cost_forms(f"the {name}", "did", "was")
    return [f"How much does the {name} cost?", f"What is the price of the {name}?", f"How much is the {name}?"]


_COSTS = re.compile(
    r"^(?P<x>(?:The |An? )?[A-Za-z][a-z]+(?: [a-z]+)?"
    r"(?: (?:of|for) (?:the )?[A-Z][\w-]*(?: [A-Z][\w-]*)*(?: [a-z]+)?)?)"  # "Tickets for the Lumora line"
    rf" (?P<verb>costs?) [$\u20ac\u00a3]?{MARK}(?P<rest>.*)$"
)


def _cost_questions(clause: str) -> list[str]:
    """What a thing the clause names without a product name costs ("Tickets cost 6.50 euros for adults": "How much
    do tickets cost for adults?"; "The project cost 88 million euros": "How much did the project cost?")."""
    found = _COSTS.match(clause)
    if not found:
        return []
    do = _does(found.group("x"))[0]
    be = "is"
    if found.group("verb") == "cost" and do == "does":  # a singular subject with "cost": the past
        do, be = "did", "was"
    subject = _object_case(found.group("x"))
    if re.fullmatch(r"[A-Z][a-z]+s", subject):  # "Tickets cost ...": a plural noun that only opens the sentence
        subject = subject.lower()
    rest = f" {found.group('rest').strip()}" if found.group("rest").strip() else ""
    return _cost_forms(subject, do, be, rest)


def _cost_forms(subject: str, do: str, be: str, rest: str = "") -> list[str]:
    """The three ways a cost is asked for ("How much did the project cost?", "What did ...", "What was the cost
    of ..."), ``rest`` the words after the price ("for adults")."""
    return [
        f"How much {do} {subject} cost{rest}?",
        f"What {do} {subject} cost{rest}?",
        f"What {be} the cost of {subject}{rest}?",
    ]


_ON_SALE = re.compile(
    r"^(?P<x>.+?) (?:goes|go|went|will go|is|are|will be|ships|ship|will ship|reaches|reach|will reach)"
    rf" (?:on sale|available|shops|stores)?\s?(?:on |from )?{MARK}"
)
_LASTS = re.compile(
    rf"^(?P<x>.+?) (?P<rated>(?:is|are) (?:rated|expected|designed) to )?"
    rf"(?P<verb>lasts?|runs? for|will last|takes?|took) {MARK}"
)
_TIME_UNITS = re.compile(r"^how many (?:years|months|weeks|days|hours|minutes)$")


def _does(subject: str) -> tuple[str, str]:
    """("does", "is") for a singular subject, ("do", "are") for a plural one ("Laptops built on ...")."""
    first = subject.split()[0]
    plural = first[0].isupper() and first.endswith("s") and first.lower() not in ("its", "this", "his")
    return ("do", "are") if plural else ("does", "is")


def _object_case(subject: str) -> str:
    """``subject`` as said after a verb: "The Tarn M3" -> "the Tarn M3", "Each Korva K9 server" -> "each Korva K9
    server", "Mowers built on ..." -> "mowers built on ..." (a first word capitalized only as the sentence's first,
    a name's next word capitalized too)."""
    words = subject.split()
    if (len(words) > 1 and words[1][0].islower()) or re.match(r"(?:The|A|An|Each|Every) ", subject):
        return subject[0].lower() + subject[1:] if re.fullmatch(r"[A-Z][a-z]*", words[0]) else subject
    return subject


def when_questions(clause: str, wh: str) -> list[str]:
    """When a product goes on sale or reaches shops (its date the marker), asked the ways buyers ask it ("When can
    you buy the Tidewell T2?", "From what date is the Tidewell T2 available?")."""
    found = _ON_SALE.match(clause)
    if not found or wh not in ("what date", "when") or not re.search(r"sale|available|ship|shops|stores", clause):
        return []
    do, be = _does(found.group("x"))
    subject = _object_case(found.group("x"))
    return [
        f"When {do} {subject} go on sale?",
        f"When can you buy {subject}?",
        f"From what date {be} {subject} available?",
        f"When will {subject} be in shops?",
    ]


def duration_questions(clause: str, wh: str) -> list[str]:
    """How long a thing lasts or runs (the time the marker), asked as a length of time ("How long does the Nimbus
    16's battery last?", "For how long is Tidewell T2's cell rated to last?")."""
    found = _LASTS.match(clause)
    if not found or not _TIME_UNITS.match(wh):
        return []
    do, be = _does(found.group("x"))
    verb = "take" if found.group("verb").startswith(("take", "took")) else "last"  # "The crossing takes 35 minutes"
    do = "did" if found.group("verb") == "took" else do
    subject = _object_case(found.group("x"))
    asked = [f"How long {do} {subject} {verb}?", f"{wh[0].upper()}{wh[1:]} {do} {subject} {verb}?"]
    if found.group("rated"):
        asked.append(f"For how long {be} {subject} {found.group('rated').split(' ', 1)[1]}last?")
    return asked


_STUDIED = re.compile(
    r"^(?P<x>.+?) (?:studied|trained|graduated|(?:was|were) (?:educated|trained))"
    rf"(?: in (?P<field>[a-z][a-z ]*?))? (?:at|from) {MARK}$"
)


_AFTER_STUDYING = re.compile(  # "Lena Marsh joined Halvren in 2017 after studying electrical engineering at <school>"
    r"^(?P<x>[A-Z][\w-]+(?: [A-Z][\w-]+)+) [a-z]+\b.*? after (?:studying|training)(?: in)?"
    rf"(?: (?P<field>[a-z][a-z ]*?))? (?:at|from) {MARK}$"
)


def education_questions(clause: str, wh: str) -> list[str]:
    """Where a person studied (the school the marker), asked the ways a reader asks it ("Where did Lena Marek
    study?", "Which school did Lena Marek attend?", "Where did Lena Marek go to school?")."""
    found = _STUDIED.match(clause) or _AFTER_STUDYING.match(clause)
    if not found or wh != "where":
        return []
    person = found.group("x")
    asked = [f"Where did {person} study?", f"Which school did {person} attend?", f"Where did {person} go to school?"]
    if found.group("field"):
        asked.append(f"Where did {person} study {found.group('field')}?")
    if "trained" in clause:
        asked.append(f"Where did {person} train?")
    return asked


_LEADS = re.compile(
    r"^(?P<x>.+?) (?P<verb>leads|led|runs|ran|heads|headed|manages|managed) (?:a|an) "
    rf"(?P<unit>group|team|studio|department|lab|laboratory|staff|crew|division) of {MARK}(?: (?P<who>[a-z]+))?"
)
_PAST = {"led": "lead", "ran": "run", "headed": "head", "managed": "manage"}


def team_questions(clause: str, wh: str) -> list[str]:
    """How many people a person's group has (the count the marker), asked as readers ask it ("Lena Marsh leads a
    group of 140 chip designers": "How many people does Lena Marsh lead?", "How big is the group Lena Marsh
    leads?")."""
    found = _LEADS.match(clause)
    if not found or not wh.startswith("how many"):
        return []
    person, verb, unit = found.group("x"), found.group("verb"), found.group("unit")
    do, base = ("did", _PAST[verb]) if verb in _PAST else ("does", verb[:-1])
    who = wh[len("how many") :].strip()  # "how many people" where the count has its noun
    asked = [] if base == "run" else [f"How many people {do} {person} {base}?"]  # not "does she run" people
    asked += [
        f"How big is the {unit} {person} {verb}?",
        f"How many people are in {person}'s {unit}?",
    ]
    if who and who != "people":
        asked.append(f"How many {who} {do} {person} {base}?")
    return asked


_SIZED = re.compile(rf"^(?P<x>.+?) (?P<verb>has|had|is|was) an? {MARK} ")
_LENGTHS = re.compile(r"^how many (?:metres|meters|inches|feet|centimetres|centimeters|millimetres|millimeters)-?$")


def size_questions(clause: str, wh: str) -> list[str]:
    """A size said as an adjective of a noun in ``clause`` (its "<n>-metre" a marker), asked as a size: "has a
    <fact> mirror" -> "How big is the mirror of X?"; "is a <fact> optical telescope" -> "How big is X?"."""
    found = _SIZED.match(clause)
    if not found or not _LENGTHS.match(wh):
        return []
    subject = re.sub(r"^[Tt]he ", "", found.group("x"))  # a thing's name: "Halden Telescope Mini has" as "the ..."
    if re.match(r"(?:it|its|she|he|his|her|they|their|this|that|our)\b", subject, re.I):
        return []
    subject = subject if "'s " in subject else f"the {subject}"  # "Halvren's new telescope" takes no "the"
    noun = clause[found.end() :].split()[-1] if found.group("verb") in ("has", "had") else ""
    thing = f"the {noun} of {subject}" if noun else subject
    return [
        f"How big is {thing}?",
        f"What size is {thing}?",
        f"How large is {thing}?",
        f"What is the size of {thing}?",
        *(form.format(f"how big {thing} is") for form in EMBEDDINGS),
    ]


# After what the amount is of (``OF_WHAT``, which ends at a preposition or "and"), the rest of the clause may only
# be a phrase that opens with a preposition or "per" ("for caching"; "per node", which ``amount_questions`` then
# refuses): not "and", so "<fact> of memory and 30 TB of storage", a list, gets no question of this kind.
_AMOUNT_OF = re.compile(
    r"^(?P<x>.+?) (?P<verb>has|have|had|offers|offer|provides|provide|delivers|deliver|includes|include)"
    rf"(?: [^,]{{1,60}}? with)? (?:up to |a combined |an? )?{MARK} of"
    rf"(?P<what>{OF_WHAT})(?P<rest> (?:{'|'.join(sorted(PREPOSITIONS | {'per'}))})\b.*)?$"
)


def amount_questions(clause: str, wh: str) -> list[str]:
    """An amount of something a thing has, asked for by what it is of ("Each p5.48xlarge instance has <fact> of
    system memory" -> "How much system memory does each p5.48xlarge instance have?", "What is the system memory of a
    p5.48xlarge instance?"); [] for a count of things ("<fact> of cars"), a price, or any other clause."""
    found = _AMOUNT_OF.match(" ".join(clause.split()))
    what = found.group("what").strip() if found else ""
    if not found or not wh.startswith("how many ") or _MONEY.match(wh) or re.search(r"[a-z][^su]s$", what):
        return []
    if what.split()[0].lower() in DETERMINERS | {"my", "your"} or " per " in f" {what}{found.group('rest') or ''}":
        return []  # "of its own" is no amount of anything; "200 GB of memory per node" is not the thing's amount
    subject = _object_case(found.group("x"))
    verb = found.group("verb")  # its number, not the subject's last word: "Tidewell Ferries has ..."
    do = "did" if verb == "had" else "does" if verb.endswith("s") else "do"
    base = "have" if verb in ("has", "have", "had") else base_form(verb)
    one = re.sub(r"^each (?=\S)", "an " if re.match(r"each [aeiouAEIOU]", subject) else "a ", subject)
    return [f"How much {what} {do} {subject} {base}?", f"What {'was' if verb == 'had' else 'is'} the {what} of {one}?"]


_UP_TO = re.compile(
    r"^(?P<x>.+?) (?P<verb>supports|support|handles|handle|holds|hold|stores|store|accepts|accept|seats|seat)"
    rf"(?: [^,]{{1,60}}? with)? up to {MARK}(?P<per> per [a-z]+)?$"
)


def limit_questions(clause: str, wh: str) -> list[str]:
    """The most a thing takes, asked without the rest of the verb's object ("The vector engine supports k-nearest
    neighbor search with up to <fact> per vector" -> "How many dimensions per vector does the vector engine
    support?"); [] for a price or any other clause."""
    found = _UP_TO.match(" ".join(clause.split()))
    if not found or not wh.startswith("how many ") or _MONEY.match(wh):
        return []
    subject, verb = _object_case(found.group("x")), found.group("verb")
    do = "does" if verb.endswith("s") else "do"
    if do == "do" and re.fullmatch(r"[A-Z][a-z]+s", subject):  # "Customers store ...": a plural common noun
        subject = subject.lower()
    per = found.group("per") or ""
    asked = f"{wh}{per} {do} {subject} {base_form(verb)}?"
    most = f"What is the maximum number of {wh.removeprefix('how many ')}{per} {subject} {verb}?"
    return [upper_first(asked), f"Up to {asked}", most]


def instrument_questions(clause: str, wh: str) -> list[str]:
    """What a plural's subject does a thing with, asked as what it uses ("Developers describe the actions an agent may
    take with <fact>" -> "Which schema do developers use to describe the actions an agent may take?")."""
    found = with_relative(clause)
    if not found or found.group("prep") not in ("with", "using") or not wh.startswith(("which ", "what ")):
        return []
    subject, verb, thing = found.group("subject").lower(), found.group("verb"), found.group("object")
    return [f"{upper_first(wh)} do {subject} use to {verb} {thing}?"]


_NOT_ATTRIBUTE = DETERMINERS | PREPOSITIONS | {"last", "next", "this", "year", "month", "week", "today", "now"}
_POSSESSED = re.compile(
    r"^(?P<x>(?:The )?[A-Z][\w./-]*(?: [A-Z0-9][\w./-]*)*)'s (?P<what>[a-z][a-z-]*(?: [a-z][a-z-]*){0,3})"
    rf" (?P<be>is|was) (?:(?:the|an?) [a-z]+ )?{MARK}$"
)


def possessed_questions(clause: str, wh: str) -> list[str]:
    """An attribute said as a thing's own, asked for by its name ("The Halden Telescope's first target was the comet
    <fact>" -> "What was the first target of the Halden Telescope?", "What was the Halden Telescope's first
    target?"); [] for any other clause, and for a bare "what" fact, which may be a person ("Sarnit's chief designer
    is <fact>": not "What is the chief designer of Sarnit?")."""
    found = _POSSESSED.match(" ".join(clause.split()))
    if not found or wh in ("what", "who"):
        return []
    owner, what, be = _object_case(found.group("x")), found.group("what"), found.group("be")
    words = what.split()
    if opening_adverb(owner.split()[0]) or any(w in _NOT_ATTRIBUTE for w in words):
        return []  # "Meanwhile Corvane's", "Corvane's engineers say the price", "revenue last year"
    if not wh.startswith("how many ") and re.search(r"(?:er|or|ist|ect|ief|ead|ent)$", words[-1]):
        return []  # a role, which a person holds: "The Orla Telescope's director is the astronomer <fact>"
    return [f"What {be} the {what} of {owner}?", f"What {be} {owner}'s {what}?"]
