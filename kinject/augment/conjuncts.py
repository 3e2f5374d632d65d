"""A coordination around a fact cut to the half that holds it, so that a question asks for one fact and its answer
states one ("carries 410 passengers and 60 cars" -> "carries 410 passengers"; "has ..., 2 TB of system memory and
30 TB of local NVMe storage" -> "has 2 TB of system memory")."""

from __future__ import annotations

import re

from .english import AUX, DETERMINERS, IRREGULAR_PAST, MARK, NOT_VERBS, PREPOSITIONS, verb_at

_QUANTITY = r"(?:no|\d[\d.,]*(?:\s(?:thousand|million|billion))?)\s[a-z]+"
# "of local NVMe storage", "of memory for caching": a list item's words after its amount, up to the "and" that
# joins the next item (what the amount is of is ``english.OF_WHAT``, shorter)
_OF_TAIL = r" of(?: (?!and\b)[\w-]+){1,4}"
AMOUNT = rf"\d[\d.,]*\s[A-Za-z]+{_OF_TAIL}"  # "2 TB of system memory"
_PHRASE = r"(?: (?:for|in|on|at|with|per)\b.*)?$"  # what may follow a list's last amount ("for caching")


def _verb_after_and(words: list[str], j: int, plain: bool = False) -> bool:
    """Whether the word after ``words[j]`` ("and") opens a verb phrase ("and weighs 19 tonnes", "and will be given")
    rather than a noun ("and cars"): an auxiliary, or a verb form followed by what a verb takes; with ``plain`` also
    a plural's verb before "those"/"these"/"them"."""
    if j + 2 >= len(words):
        return False
    verb, after = words[j + 1], words[j + 2]
    if verb.lower() in AUX:
        return True
    if not verb.isalpha() or verb[0].isupper() or verb.lower() in NOT_VERBS:
        return False
    form = (
        verb in IRREGULAR_PAST
        or verb == "cost"  # present or past: "and cost 214 million euros"
        or (verb.endswith("ed") and len(verb) > 4)
        or (verb.endswith("s") and len(verb) > 3 and not verb.endswith(("ss", "us", "is")))
    )
    takes = after == MARK or after[0].isdigit() or after[0].isupper() or after.lower() in DETERMINERS | PREPOSITIONS
    if plain and not form and after in ("those", "these", "them") and not verb.endswith("s"):
        return True  # a plural's verb: "describe the actions with <fact> and implement those actions as ..."
    return form and (takes or verb in ("lets", "allows", "helps", "enables"))  # "and lets developers combine ..."


def one_conjunct(clause: str) -> str:
    """``clause`` (its fact a marker) without the other half of a coordination around the fact, so that its question
    asks for one fact and its answer states one: "carries <fact> and 60 cars" -> "carries <fact>"; "was cast by
    <fact> and weighs 19 tonnes" -> "was cast by <fact>"; "was cast by X and weighs <fact>" -> "<its subject>
    weighs <fact>"."""
    clause = re.sub(rf"(?<={MARK}) and {_QUANTITY}\b", "", clause)
    clause = re.sub(rf"\b{_QUANTITY} and (?={MARK})", "", clause)
    clause = re.sub(rf"(?<={MARK})({_OF_TAIL}) and {AMOUNT}{_PHRASE}", r"\1", clause)  # "<fact> of memory and 30 TB"
    clause = re.sub(rf"\b{AMOUNT} and (?={MARK}{_OF_TAIL}{_PHRASE})", "", clause)
    words = clause.split()
    # a plain verb only after the fact: before it, the subject of the half after "and" is not plain to see
    joins = [j for j, w in enumerate(words) if w == "and" and _verb_after_and(words, j, MARK in words[:j])]
    if not joins or MARK not in words:
        return clause
    j, at = joins[0], words.index(MARK)
    if at < j:
        return " ".join(words[:j]).rstrip(",")
    found = verb_at(words[:j])
    if found is None or found[0] == 0:
        return clause
    return " ".join(words[: found[0]] + words[j + 1 :])
