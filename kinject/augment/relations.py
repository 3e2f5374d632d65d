"""Questions about a relation an apposition states ("Marit Ekholm, the chief executive of Calvane Transit"): who holds
the role, and what the holder's role is of, each in the ways English turns such a relation around.

- the role asked: "Who is the chief executive of Calvane Transit?", "Who is Calvane Transit's chief executive?",
  "Who heads Calvane Transit?";
- the role's organisation asked from its holder (a quote's attribution, "said Ilse Marrakov, chief executive of
  Orvanta Metering"): "Ilse Marrakov is the chief executive of which company?", "Which company does Ilse Marrakov
  head?";
- the answer: "Marit Ekholm is the chief executive of Calvane Transit.", the page's "the observatory" named ("the
  Orrin Observatory's director").
"""

from __future__ import annotations

import re

from .english import MARK, name_pronouns
from .facts import Span, name_spans

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
    asked = re.sub(rf"\b{re.escape(fact)}\b", wh, role, count=1)
    found = [f"{name} is {asked}?"]
    if wh.startswith("which ") and re.fullmatch(rf".*\bof {re.escape(fact)}", role):
        if _HEADS.match(role):
            found.append(f"{wh[0].upper() + wh[1:]} does {name} head?")
        elif _FOUNDS.match(role):
            found.append(f"{wh[0].upper() + wh[1:]} did {name} found?")
    return found
