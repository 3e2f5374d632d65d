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
built the boats?", "Which company built the boats?"). Attributes a fact's clause states (a price, a sale date, a
length of time, a school, a group's size, a size) are asked in ``attributes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .english import MARK, name_pronouns, upper_first
from .facts import Span, name_spans, opening_adverb, paragraphs, sentences

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
            found.append(f"{upper_first(wh)} does {name} head?")
        elif _FOUNDS.match(role):
            found.append(f"{upper_first(wh)} did {name} found?")
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
    r"(?:(?:two|three|four|several)\s(?:sizes|models|versions)\sof\s)?"
    r"(?P<product>(?:the|its|their|a|an)\s[^,;.:]{2,80}?)(?=[,:]|\s+(?:on|in|at|from|for|with)\s|[.;]|$)"
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
    names = name_spans(subject, specific=not found.group("apposition"))  # "Corvane, a laptop maker ...": a name
    if not names or names[0].start != 0 or names[0].text != subject or opening_adverb(subject):
        return None  # "The city of Porto Verde opened ...": not a name alone; "Yesterday, a startup, X, launched"
    product = re.sub(r"^(?:its|their)\s(?:own\s)?", "the ", found.group("product"))  # "its new Nimbus notebook"
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


_PARTICIPLES = "built|made|designed|developed|founded|led|operated|run|owned|manufactured|produced|created|cast"
_AGENT = re.compile(
    r"\b(?:[Tt]he|[Aa]n?|two|three|four|five|\d+|[Ii]ts|[Tt]heir)\s+"
    r"(?P<noun>(?:[a-z][a-z\-]* ){0,2}?[a-z][a-z\-]*|[A-Z][\w\-]*(?: [A-Z][\w\-]*)*)"  # "the boats", "the Harbor Line"
    r"(?P<of>\s+(?:of|for)\s+(?:the\s+)?[A-Z][\w\-]*(?:\s+[A-Z][\w\-]*)*(?:\s+(?!(?:was|were|is|are)\b)[a-z]+)?)?\s+"
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
    noun += found.group("of") or ""
    asked = [f"Who {verb} the {noun}?"]
    if not re.search(rf"\b(?:{_ROLE})\b", sentence[: span.start][-40:]):  # "the astronomer X": a person
        asked.append(f"Which company {verb} the {noun}?")
    return asked
