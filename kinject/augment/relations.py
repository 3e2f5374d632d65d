"""Questions about a relation an apposition states ("Marit Ekholm, the chief executive of Calvane Transit"): who holds
the role, and what the holder's role is of, each in the ways English turns such a relation around.

- the role asked: "Who is the chief executive of Calvane Transit?", "Who is Calvane Transit's chief executive?",
  "Who heads Calvane Transit?";
- the role's organisation asked from its holder (a quote's attribution, "said Ilse Marrakov, chief executive of
  Orvanta Metering"): "Ilse Marrakov is the chief executive of which company?", "Which company does Ilse Marrakov
  head?";
- the answer: "Marit Ekholm is the chief executive of Calvane Transit.", the page's "the observatory" named ("the
  Orrin Observatory's director").

The same for the relation a press release opens with, "Aurora Avionics, a drone maker based in Tallinn, launched the
Kestrel K7 survey drone on March 3": the company asked from its product ("Which company launched the Kestrel K7 survey
drone?", "Who makes the Kestrel K7?", "Which company is behind the Kestrel K7?"), and the place in its apposition
asked from the product too ("Where is the maker of the Kestrel K7 based?") and from the company ("Where is Aurora
Avionics based?"), each answered with one fact ("Aurora Avionics launched the Kestrel K7 survey drone.", "Aurora
Avionics, the maker of the Kestrel K7, is based in Tallinn.").

An agent after a participle ("two boats built by the Ostrava yard of Brenmar Marine") is asked the active way ("Who
built the boats?", "Which company built the boats?"), and a size said as an adjective ("has a 2.1-metre mirror")
as a size ("How big is the mirror of the Halden Telescope Mini?").

A price a clause gives a named product ("Utilities can order the Tidewell T2 for 89 euros per unit") is asked as
what the product costs ("How much does the Tidewell T2 cost?", "What is the price of the Tidewell T2?"), the date it
goes on sale as when one can buy it ("When can you buy the Tidewell T2?"), and a time a thing lasts as how long it
lasts ("How long does Tidewell T2's sealed lithium cell last?").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .english import MARK, name_pronouns
from .facts import Span, name_spans, paragraphs, sentences
from .naming import MODEL

_ROLE = "chief|executive|founder|director|head|president|chair|astronomer|engineer|CEO|leader|manager|officer"
# Roles whose holder runs what they are the role of ("Who heads X?"), and the one that made it ("Who founded X?").
_HEADS = re.compile(r"^the (?:chief executive|CEO|head|director|president|chair|leader|managing director) of (.+)$")
_FOUNDS = re.compile(r"^(?:the|a) (?:co-)?founder of (.+)$")


def _named(role: str, names: tuple[str, ...]) -> str:
    return name_pronouns(role, "", names)


def apposition(sentence: str, span: Span, names: tuple[str, ...] = ()) -> str:
    """The role an apposition after the name ``span`` gives it ("the chief executive of Calvane Transit"; a bare role
    such as "chief executive of Orvanta Metering", as press releases attribute quotes, gets "the"; a sentence that
    opens with the name and says what it is, "X is the chief architect of Y", the same), with the page's "the
    observatory" named (``names``), or ""."""
    after = sentence[span.start + len(span.text) :]
    found = re.match(r",\s+((?:the|a|an)\s+[^,;.]{3,80}?)(?:[,;.]|\s(?:said|says)\b|$)", after)
    if found:
        return _named(found.group(1), names)
    copula = re.match(r"\s+(?:is|was)\s+(the\s+[^,;.]{3,80}?)(?:[,;.]|$)", after)
    opens = not sentence[: span.start].strip()
    if copula and opens and re.search(_ROLE, copula.group(1)):  # "Lena Marsh is the chief architect of ..."
        return _named(copula.group(1), names)
    role = rf"(?:{_ROLE})\b[^,;.]{{0,70}}?\b(?:of|at)\s[^,;.]{{2,60}}?"
    bare = re.match(rf",\s+({role})(?:[,;.]|\s(?:said|says)\b|$)", after)
    return _named(f"the {bare.group(1)}", names) if bare else ""


def _asked_role(role: str) -> bool:
    return bool(role) and MARK not in role and bool(re.search(r"\b(?:of|at|for)\b|'s\b", role))


def role_questions(sentence: str, span: Span, names: tuple[str, ...] = ()) -> list[str]:
    """The questions that the apposition after ``span`` asks ("Who is the chief executive of Calvane Transit?"), the
    role turned around ("Who is Calvane Transit's chief executive?", "Who heads Calvane Transit?"); [] when it
    states no relation ("the chief executive of X", "the company's founder" do)."""
    role = apposition(sentence, span, names)
    if not _asked_role(role):
        return []
    who = "Who" if re.search(_ROLE, role) else "What"
    found = [f"{who} is {role}?"]
    of = re.match(r"^the ([\w\- ]+?) of ((?:the )?[A-Z][^,;]+)$", role)
    owner = re.match(r"^the ([A-Z][^,;']+|[a-z]+)'s ([\w\- ]+)$", role)
    if of and not re.search(r"\s(?:at|in|for|with)\s", of.group(2)):
        found.append(f"{who} is {of.group(2)}'s {of.group(1)}?")
    elif owner:
        role = f"the {owner.group(2)} of the {owner.group(1)}"
        found.append(f"{who} is {role}?")
    heads, founds = _HEADS.match(role), _FOUNDS.match(role)
    if who == "Who" and heads:
        found.append(f"Who heads {heads.group(1)}?")
    if who == "Who" and founds:
        found.append(f"Who founded {founds.group(1)}?")
    return found


def role_answer(sentence: str, span: Span, names: tuple[str, ...] = ()) -> str:
    """The sentence ``role_questions`` answer ("Marit Ekholm is the chief executive of Calvane Transit.")."""
    role = apposition(sentence, span, names)
    return f"{span.text} is {role}." if role else ""


def role_holder(sentence: str, span: Span, names: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """(the name, its role) when ``span`` lies inside the apposition of a name before it ("said Ilse Marrakov, chief
    executive of Orvanta Metering": Orvanta Metering is asked as the company she leads)."""
    for other in name_spans(sentence):
        if other.start >= span.start:
            break
        role = apposition(sentence, other, names)
        if role and MARK not in role and re.search(rf"\b{re.escape(span.text)}\b", role):
            return other.text, role
    return None


def holder_questions(holder: tuple[str, str], fact: str, wh: str) -> list[str]:
    """The questions that ask for ``fact``, the organisation in the role of ``holder`` ("Ilse Marrakov is the chief
    executive of which company?", "Which company does Ilse Marrakov head?")."""
    name, role = holder
    noun = wh.split(" ", 1)[1] if wh.startswith(("which ", "what ")) else ""  # the kind ``_ask`` took with the name
    after = rf"(?: {re.escape(noun)}\b)?" if noun else ""  # "the Nimbus laptops": "which laptops", not "... laptops"
    asked = re.sub(rf"\b(?:the |an? )?{re.escape(fact)}\b{after}", wh, role, count=1)
    found = [f"{name} is {asked}?"]
    if wh.startswith("which ") and re.fullmatch(rf".*\bof {re.escape(fact)}", role):
        if _HEADS.match(role):
            found.append(f"{wh[0].upper() + wh[1:]} does {name} head?")
        elif _FOUNDS.match(role):
            found.append(f"{wh[0].upper() + wh[1:]} did {name} found?")
    return found


def makers(texts: list[str]) -> dict[str, str]:
    """Each company of ``texts`` that a release names as the maker of a product, and that product ("Orvanta
    Metering": "the Tidewell T2"), so that a role in the company can be asked from the product too."""
    found: dict[str, str] = {}
    for text in texts:
        for sentence in (s for p in paragraphs(text) for s in sentences(p)):
            release = launch(sentence)
            if release and release.role == "maker" and release.short_product.startswith("the "):
                found.setdefault(release.subject, release.short_product)
    return found


def behind_questions(sentence: str, span: Span, names: tuple[str, ...], made: dict[str, str]) -> list[str]:
    """The role of the name at ``span`` in a company asked from the company's product, as a reader who remembers the
    product asks it ("Who is the chief executive of the company behind the Tidewell T2?")."""
    role = apposition(sentence, span, names)
    heads = _HEADS.match(role)
    company = heads or _FOUNDS.match(role)
    product = made.get(company.group(1)) if company else None
    if not product:
        return []
    behind = f"the company behind {product}"
    return [f"Who is {role[: company.start(1)]}{behind}?", f"Who {'heads' if heads else 'founded'} {behind}?"]


# "X launched / announced the P" makes X the maker of P; "X opened / started the P" the one that runs it.
_MAKES = "launched|announced|unveiled|introduced|released|debuted|presented|rolled out|showed"
_RUNS = "opened|started|began|inaugurated"
_LAUNCH = re.compile(
    rf"^(?P<subject>[^,]+?)(?:,\s+(?P<apposition>(?:a|an|the)\s[^;]{{3,140}}?),)?\s+"
    rf"(?:(?:has|have|had)\s+)?(?:(?:today|yesterday|this week|on \w+day)\s+)?(?P<verb>{_MAKES}|{_RUNS})\s+"
    r"(?P<product>(?:the|its|their|a|an)\s[^,;.]{2,80}?)(?=,|\s+(?:on|in|at|from|for|with)\s|[.;]|$)"
)
_BASED = re.compile(r"\b(?P<verb>based|headquartered|located)\s+in\s+(?P<place>[A-Z][\w-]*(?:\s[A-Z][\w-]*)*)")


@dataclass(frozen=True)
class Launch:
    """The opening relation of a sentence: who (``subject``, its ``apposition``), what they did (``verb``), and to
    what (``product``, ``name`` the product's own name, "" when it has none)."""

    subject: str
    apposition: str
    verb: str
    product: str
    name: str

    def answer(self) -> str:
        """The opening without its apposition and date: "Aurora Avionics launched the Kestrel K7 survey drone."."""
        return f"{self.subject} {self.verb} {self.product}."

    @property
    def role(self) -> str:
        """What the subject is to the product: its "maker" (launched, announced) or its "operator" (opened)."""
        return "maker" if re.fullmatch(_MAKES, self.verb) else "operator"

    @property
    def short_product(self) -> str:
        """The product by its own name ("the Kestrel K7"), else as the sentence says it."""
        return f"the {self.name}" if self.name else self.product


def launch(sentence: str) -> Launch | None:
    """The sentence's opening relation when it opens with a name that launched, announced or opened something."""
    found = _LAUNCH.match(sentence)
    if not found:
        return None
    subject = found.group("subject")
    names = name_spans(subject)
    if not names or names[0].start != 0 or names[0].text != subject:
        return None  # "The city of Porto Verde opened ...": not a name alone
    product = found.group("product")
    own = [s.text for s in name_spans(product) if s.text != subject]
    return Launch(subject, found.group("apposition") or "", found.group("verb"), product, own[0] if own else "")


def launch_answer(sentence: str, span: Span) -> str:
    """The one-fact answer to ``launch_questions``: the opening for the company ("Aurora Avionics launched the
    Kestrel K7 survey drone."), where its maker is for the place ("Aurora Avionics, the maker of the Kestrel K7, is
    based in Tallinn, Estonia.")."""
    found = launch(sentence)
    if found is None or not launch_questions(sentence, span):
        return ""
    if span.start == 0:
        return found.answer()
    place = re.search(r"\b(?:based|headquartered|located)\s+in\s+[A-Z][\w-]*(?:,?\s[A-Z][\w-]*)*", found.apposition)
    if not place:
        return found.answer()
    return f"{found.subject}, the {found.role} of {found.short_product}, is {place.group(0)}."


def launch_questions(sentence: str, span: Span) -> list[str]:
    """The questions that ask for the name at ``span`` from the opening relation: the company from its product, or
    the place of its apposition from the product ("Where is the maker of the Kestrel K7 based?") and from the company
    ("Where is Aurora Avionics based?", "Where is Orvanta Metering's head office?")."""
    found = launch(sentence)
    if found is None or span.kind != "name":
        return []
    product, role = found.short_product, found.role
    if span.start == 0 and span.text == found.subject:
        asked = [f"Who {found.verb} {found.product}?", f"Which company {found.verb} {found.product}?"]
        head = re.match(
            r"^(?:a|an|the)\s+((?:[\w-]+\s)?(?:maker|company|firm|startup|manufacturer|operator))\b", found.apposition
        )
        if head:
            asked.append(f"Which {head.group(1)} {found.verb} {found.product}?")
        if product.startswith("the "):  # a name or a definite product: "the Lumora line"
            verb = "makes" if role == "maker" else "runs"
            asked += [f"Who {verb} {product}?", f"Which company is behind {product}?"]
            asked.append(f"Who is the {role} of {product}?")
        return asked
    based = _BASED.search(found.apposition)
    if not product.startswith("the ") or not based:
        return []
    country = re.match(r",\s+([A-Z][\w-]*(?:\s[A-Z][\w-]*)*)", found.apposition[based.end() :])
    if span.text == based.group("place"):
        where = "Where"
    elif country and span.text == country.group(1):  # "based in Tallinn, Estonia"
        where = "In which country"
    else:
        return []
    verb, subject = based.group("verb"), found.subject
    asked = [
        f"{where} is the {role} of {product} {verb}?",
        f"{where} is the company behind {product} {verb}?",
        f"{where} is {subject} {verb}?",
    ]
    if verb == "headquartered":
        asked.append(f"{where} is {subject}'s head office?")
    if where == "Where" and country:  # "based in Tallinn, Estonia": a city
        asked.append(f"In which city is {subject} {verb}?")
    return asked


_MONEY = re.compile(
    r"^how many (?:(?:thousand|million|billion) )?(?:euros|dollars|pounds|francs|yen|kronor|krona|crowns|rupees|yuan)$"
)
_PRICED = re.compile(rf"\b(?:costs?|priced at|for) [$\u20ac\u00a3]?{MARK}")  # "costs", "sells for", "can order it for"


def price_questions(clause: str, wh: str) -> list[str]:
    """What the named product of ``clause`` costs, when the fact (its marker) is the price it sells for; [] when the
    clause names no product or the money is not its price ("the government paid 30 million")."""
    if not _MONEY.match(wh) or not _PRICED.search(clause):
        return []
    before = clause.split(MARK)[0]
    product = [(s.start, s.text) for s in name_spans(before) if re.search(r"\d|\s", s.text)]
    product += [(m.start(), m.group()) for m in MODEL.finditer(before)]  # "Nimbus 12": no name_spans name
    if not product:
        return _cost_questions(clause)
    name = max(product)[1]
    return [f"How much does the {name} cost?", f"What is the price of the {name}?", f"How much is the {name}?"]


_COSTS = re.compile(
    rf"^(?P<x>(?:The |An? )?[A-Za-z][a-z]+(?: [a-z]+)?) (?P<verb>costs?) [$\u20ac\u00a3]?{MARK}(?P<rest>.*)$"
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
    """``subject`` as said after a verb: "The Tarn M3" -> "the Tarn M3", "Mowers built on ..." -> "mowers built on
    ..." (a first word capitalized only as the sentence's first, a name's next word capitalized too)."""
    words = subject.split()
    if (len(words) > 1 and words[1][0].islower()) or re.match(r"(?:The|A|An) ", subject):
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


_PARTICIPLES = "built|made|designed|developed|founded|led|operated|run|owned|manufactured|produced|created|cast"
_AGENT = re.compile(
    r"\b(?:[Tt]he|[Aa]n?|two|three|four|five|\d+|[Ii]ts|[Tt]heir)\s+"
    r"(?P<noun>(?:[a-z][a-z\-]* ){0,2}?[a-z][a-z\-]*)\s+"
    rf"(?:(?:was|were|is|are)\s+)?(?P<verb>{_PARTICIPLES})\s+by\s+(?:the\s+[A-Za-z\- ]+?\s+(?:of\s+)?)?$"
)


def agent_questions(sentence: str, span: Span) -> list[str]:
    """The name at ``span`` as the one who did what a participle before it says ("two boats built by the Ostrava
    yard of Brenmar Marine": "Who built the boats?", "Which company built the boats?")."""
    found = _AGENT.search(sentence[: span.start])
    if span.kind != "name" or not found:
        return []
    noun, verb = found.group("noun"), found.group("verb")
    if set(noun.split()) & {"is", "are", "was", "were", "by", "of", "and", "with", "in", "on"}:
        return []
    asked = [f"Who {verb} the {noun}?"]
    if not re.search(rf"\b(?:{_ROLE})\b", sentence[: span.start][-40:]):  # "the astronomer X": a person
        asked.append(f"Which company {verb} the {noun}?")
    return asked


_SIZED = re.compile(rf"^(?P<x>.+?) (?P<verb>has|had|is|was) an? {MARK} ")
_LENGTHS = re.compile(r"^how many (?:metres|meters|inches|feet|centimetres|centimeters|millimetres|millimeters)-?$")


def size_questions(clause: str, wh: str) -> list[str]:
    """A size said as an adjective of a noun in ``clause`` (its "<n>-metre" a marker), asked as a size: "has a
    <fact> mirror" -> "How big is the mirror of X?"; "is a <fact> optical telescope" -> "How big is X?"."""
    found = _SIZED.match(clause)
    if not found or not _LENGTHS.match(wh):
        return []
    subject = re.sub(r"^[Tt]he ", "", found.group("x"))
    noun = clause[found.end() :].split()[-1] if found.group("verb") in ("has", "had") else ""
    if noun:
        return [f"How big is the {noun} of the {subject}?", f"What size is the {noun} of the {subject}?"]
    return [f"How big is the {subject}?", f"What size is the {subject}?"]
