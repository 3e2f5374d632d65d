"""Rules of English that turn a statement into a question: the clause's verb, its base form, the question words
first (``fronted``), and a thing or an attribute said in other words (``reworded``).

Plain rules for the sentences of ordinary news and product pages, not a parser: where a rule does not see the verb
it gives no question, and the fact is asked in the other forms (``kinject.augment.questions``).
"""

from __future__ import annotations

import re

from .facts import _OPENERS

MARK = "\x00"  # where the asked fact stood in a clause
AUX = frozenset("is are was were has have had can could will would shall should may might must".split())
# Common irregular past forms and their base form (for "did ... <base>").
IRREGULAR_PAST = {
    "built": "build",
    "made": "make",
    "cast": "cast",
    "paid": "pay",
    "led": "lead",
    "said": "say",
    "took": "take",
    "gave": "give",
    "began": "begin",
    "sold": "sell",
    "held": "hold",
    "won": "win",
    "bought": "buy",
    "brought": "bring",
    "found": "find",
    "grew": "grow",
    "rose": "rise",
    "fell": "fall",
    "left": "leave",
    "sent": "send",
    "spent": "spend",
    "went": "go",
    "came": "come",
    "became": "become",
    "got": "get",
    "kept": "keep",
    "lost": "lose",
    "put": "put",
    "set": "set",
    "told": "tell",
    "wrote": "write",
    "ran": "run",
    "chose": "choose",
}
# Words ending in -s or -ed that are not a clause's verb.
NOT_VERBS = frozenset(
    "its this his hers ours yours theirs us was has is as thus plus news series species less unless across "
    "always perhaps whereas bus gas lens chaos analysis basis status campus bonus focus census virus "
    "speed need red bed hundred seed feed".split()
)
DETERMINERS = frozenset("the a an its their our his her this that these those each every".split())
PREPOSITIONS = frozenset("on in at by from since until before after during for of to with into".split())
# What an amount is of ("2 TB of system memory for caching", "64 GB of memory per node"): the one to four words
# after "of", the first a word, up to a preposition, "and" or a comma.
AMOUNT_OF_STOPS = PREPOSITIONS | {"and"}
_NOT_STOP = rf"(?!(?:{'|'.join(sorted(AMOUNT_OF_STOPS))})\b)"
OF_WHAT = rf" {_NOT_STOP}[a-zA-Z][\w-]*(?: {_NOT_STOP}[\w-]+){{0,3}}"
# An attribute said otherwise, form for form (only words that keep their sense wherever they stand).
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("carries", "holds"),
    ("carry", "hold"),
    ("headquartered", "based"),
    ("headquarters", "head office"),
    ("leads", "heads"),
    ("lead", "head"),
    ("built", "constructed"),
    ("build", "construct"),
    ("launched", "introduced"),  # not "opened": a drone is launched, not opened
    ("launch", "introduce"),
    ("chief executive", "CEO"),
    ("memory", "RAM"),
    ("company", "firm"),
    ("announced", "unveiled"),
    ("announce", "unveil"),
    ("costs", "sells for"),  # not "cost": "the line cost 214 million" is past
    ("founded", "established"),
    ("customers", "clients"),
    ("metres", "meters"),
    ("metre", "meter"),
    ("kilometres", "kilometers"),
    ("litres", "liters"),
)
# A thing said in wider words, one way only: passengers are people, not all people passengers. Said otherwise only
# after a determiner or a number ("how many passengers", "the crossing of"; not "foot passengers", "border crossing"
# or "before crossing the strait"; ``_DETERMINED``).
WIDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("passengers", ("people",)),
    ("visitors", ("people",)),
    ("employees", ("people", "staff")),
    ("workers", ("people",)),
    ("tonnes", ("tons",)),
    ("crossing", ("trip", "journey")),
    ("voyage", ("trip",)),
    ("comet", ("object",)),
    ("asteroid", ("object",)),
    ("boats", ("vessels",)),
    ("director", ("head",)),
)
# What one travels on a line or a route, in any of these words: "the trip on the Lumora line".
JOURNEYS = frozenset({"crossing", "trip", "journey", "voyage", "ride", "flight", "cruise"})
# An act said in wider words, one way only.
WIDER_ACTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("operates", ("runs",)),
    ("operated by", ("run by",)),  # not "operated" alone: its past is "ran"
)
# How long an event takes said as how long it lasts, only where such a duration is asked (``_DURATION_ASKED``):
# not "take over", nor what a battery takes to charge (it "lasts" as long as it runs).
DURATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("take?", ("last?",)),
    ("takes how", ("lasts how",)),
)


# "of diesel a year": the rate is no part of what the amount is of ("of a former mine" is; "grade A steel" too)
_AMOUNT_OF_ENDS = frozenset(("a", "an"))
_ADVERBS = frozenset("now also still already only currently".split())  # between a subject and its verb
_NOT_NOUNS = frozenset("across as towards versus whereas plus thus perhaps always".split())  # end in -s, not plurals
# The question words of a unit an amount is counted in ("how many TB", "how many tonnes"; not the units a number
# may carry, ``facts._UNIT``), which "of <what>" follows as one phrase; not a count of things a verb takes "of"
# after ("notified 300 passengers of the delay").
_AMOUNT_UNIT = re.compile(
    r"^how many (?:\S*[A-Z]\S*|tonnes|tons|litres|liters|kilograms|grams|hectares|acres|barrels|gallons|bytes"
    r"|(?:kilo|mega|giga|tera)(?:bytes|watts|watt-hours)|watts)$"
)


def _adverb_before_verb(words: list[str]) -> bool:
    """Whether ``words`` are an adverb and a plain verb ("now support"), not an adverb before a number or a noun
    phrase ("only 3 million euros", "already 410 passengers")."""
    if len(words) < 2 or words[0].lower() not in _ADVERBS:
        return False
    verb = words[1]
    return verb.isalpha() and verb.islower() and not verb.endswith("s") and verb not in DETERMINERS | PREPOSITIONS


def verb_at(words: list[str]) -> tuple[int, str] | None:
    """(index, kind) of the clause's finite verb among ``words``: an auxiliary ("aux"), a present ("does"; "do" for a
    plural's plain verb after an adverb) or a past ("did") verb after the subject; None when none is plain to see."""
    for i, word in enumerate(words):
        lower = word.lower()
        if i == 0:
            continue
        if lower in AUX:
            return i, "aux"
        if not word.isalpha() or word[0].isupper() or lower in NOT_VERBS or lower in DETERMINERS:
            continue
        previous = words[i - 1].lower()
        if previous in DETERMINERS or previous in PREPOSITIONS or previous in ("and", "or"):
            continue  # "the boats", "of sales": a noun
        if lower in IRREGULAR_PAST or (lower.endswith("ed") and len(lower) > 4):
            return i, "did"
        if i + 1 < len(words) and words[i + 1].lower() in AUX:
            continue  # "P5 instances are ...": a plural noun before the verb
        if lower.endswith("s") and _adverb_before_verb(words[i + 1 : i + 3]):
            return i + 2, "do"  # "notebooks now support", "chassis now ship": the plain verb says the noun is plural
        if lower.endswith("s") and len(lower) > 3 and not lower.endswith(("ss", "us", "is")):
            return i, "does"
    return None


def base_form(verb: str) -> str:
    """The base form of a present (-s) or past (-ed, irregular) verb: carries -> carry, opened -> open."""
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    if verb == "has":
        return "have"
    if verb.endswith("ied") or verb.endswith("ies"):
        return verb[:-3] + "y"
    if verb.endswith("ed"):
        stem = verb[:-2]
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
            return stem[:-1]  # planned -> plan
        if re.search(r"(?:[cgvzu]|[^aeiou][bdgkpt]l|[^aeiou]at|it|ur|[^aeiou]s|iz|ys)$", stem) and not stem.endswith(
            ("ss", "rt", "st")
        ):
            return stem + "e"  # announced, replaced, used, created, priced
        return stem
    if re.search(r"(?:ch|sh|ss|x|z|o)es$", verb):
        return verb[:-2]
    return verb[:-1] if verb.endswith("s") else verb


def third_person(base: str) -> str:
    """A verb's base form as it follows a singular subject: carry -> carries, reach -> reaches, power -> powers."""
    if re.search(r"[^aeiou]y$", base):
        return base[:-1] + "ies"
    return base + "es" if re.search(r"(?:ch|sh|ss|x|z|o)$", base) else base + "s"


def upper_first(text: str) -> str:
    """``text`` with its first letter a capital, to open a question or a sentence ("" stays "")."""
    return text[:1].upper() + text[1:]


def lower_first(text: str) -> str:
    """``text`` with its first word in lower case when it is an ordinary word that only opened the sentence."""
    first = text.split(" ", 1)[0]
    return text[0].lower() + text[1:] if first in _OPENERS or first.lower() in DETERMINERS else text


_HAVE = {"has": "does", "have": "do", "had": "did"}
# The question words of a time or a place, whose preposition before the fact goes when they are fronted ("go on sale
# on <fact>": "When does it go on sale?"); a day, a time and a month are then asked with "when", a year as it is.
_TIME_OR_PLACE = ("what date", "what time", "what month", "what year", "where")
_WHEN = {"what date": "when", "what time": "when", "what month": "when"}


_WITH_RELATIVE = re.compile(
    rf"^(?P<subject>[A-Z][a-z]+s) (?P<verb>[a-z]+[^s\W]) (?P<object>(?:the|a|an) [a-z]+ (?:that )?(?:the|a|an) [a-z]+"
    rf" (?:may|can|could|will|would|should|must|might) [a-z]+) (?P<prep>with|in|on|by|from|for|through|using) {MARK}$"
)


def plain_present(verb: str) -> bool:
    """Whether ``verb`` reads as a plural's present ("describe"), not a past ("described", "told") or a word that is
    no verb."""
    return not (verb.endswith("ed") or verb in IRREGULAR_PAST or verb in NOT_VERBS | AUX | DETERMINERS | PREPOSITIONS)


def with_relative(clause: str) -> re.Match[str] | None:
    """A plural's clause whose object has a relative clause before the fact ("Developers describe the actions an
    agent may take with <fact>": subject, verb, object, preposition), or None; a plain present verb is what says the
    capitalized first word is a plural common noun ("Developers"), not a name ("Reuters told ...")."""
    found = _WITH_RELATIVE.match(" ".join(clause.split()))
    return found if found and plain_present(found.group("verb")) else None


def _fronted_past_relative(clause: str, wh: str) -> str:
    """The question of ``with_relative``'s clause ("With which schema do developers describe the actions an agent
    may take?"), where ``fronted`` would take the relative clause's auxiliary for the verb; "" for any other."""
    found = with_relative(clause)
    if not found or wh.endswith("-") or wh == "what":
        return ""  # "In what do analysts expect ...?" asks nothing
    head = f"{found.group('prep').capitalize()} {wh}"
    if wh in (*_TIME_OR_PLACE, "when"):
        head = "Where" if wh == "where" else "When"  # not "In where do ...?"
    subject, verb, thing = found.group("subject").lower(), found.group("verb"), found.group("object")
    return f"{head} do {subject} {verb} {thing}?"


def fronted(clause: str, wh: str) -> str:
    """The question of ``clause`` (its fact a marker) with ``wh`` first: the subject turned around an auxiliary
    ("How many years is the T2's cell rated to last?") or "does"/"did" with the verb's base form ("When does the T2
    go on sale?"); "" where the verb is not plain to see, or is far from the fact."""
    words = clause.replace(",", " ,").split()
    if MARK not in words or wh.endswith("-"):
        return ""
    past_relative = _fronted_past_relative(clause, wh)
    if past_relative:
        return past_relative
    at = words.index(MARK)
    if at == 0:
        return ""  # the subject asked: the cloze form is the question already
    after = words[at + 1 : at + 2]
    if "-" in words[at - 1] or (after and after[0][0] in "(" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
        return ""  # the fact is part of a longer phrase ("second-generation <fact>", "<fact> (N. Virginia)")
    found = verb_at(words[:at])
    if found is None:
        return ""
    i, kind = found
    between = words[i + 1 : at]
    if len(between) > 6 or "," in between or any(w.lower() in AUX for w in between) or words[at - 1] == "of":
        return ""
    if between[-2:] == ["up", "to"] and len(between) > 3:
        return ""  # "support k-nearest neighbor search with up to <fact>": no question reads well with it moved
        # (``attributes.limit_questions`` asks "How many ... does it support?")
    subject = lower_first(" ".join(words[:i]).replace(" ,", ","))
    if any(w not in PREPOSITIONS | _NOT_NOUNS for w in re.findall(r"\b([a-z]+s) (?:a|an|the)\b", subject)):
        return ""  # "the actions an agent may take": the auxiliary is a relative clause's, not the subject's
    tail = between + words[at + 1 :]
    if wh in _TIME_OR_PLACE and between:
        if between[-1].lower() in PREPOSITIONS:  # "go on sale on [when]": the preposition goes with the fact
            tail = between[:-1] + words[at + 1 :]
    head = _WHEN.get(wh, wh)
    amount = words[at + 1 :]  # "How many TB of memory does X have?", "... of diesel does X expect to save?"
    if _AMOUNT_UNIT.match(wh) and amount[:1] == ["of"] and not (between and between[-1].lower() in PREPOSITIONS):
        size = next(
            (
                k
                for k, w in enumerate(amount[1:], 1)
                if w == "," or w.lower() in AMOUNT_OF_STOPS or (k > 1 and w in _AMOUNT_OF_ENDS)
            ),
            None,
        )
        size = len(amount) if size is None else size
        if 1 < size <= 5:
            head, tail = f"{head} {' '.join(amount[:size])}", between + amount[size:]
    rest = " ".join(tail).replace(" ,", ",").strip(" ,")
    head = upper_first(head)
    verb = words[i].lower()
    if kind == "aux" and verb in _HAVE and not between:  # "has 8 GPUs": "... does it have?", not "... has it?"
        kind, verb = _HAVE[verb], "have"
    question = (
        f"{head} {verb} {subject} {rest}" if kind == "aux" else f"{head} {kind} {subject} {base_form(verb)} {rest}"
    )
    return " ".join(question.split()).rstrip(" ,") + "?"


_PASSIVE = re.compile(rf"^(?P<subject>.+?) (?P<be>is|are|was|were) (?P<verb>[a-z]+ed) by {MARK}$")


def active(clause: str, wh: str) -> str:
    """The question of a passive clause whose fact is its agent, turned active: "P5 instances are powered by
    <fact>" -> "What powers P5 instances?", "Which Tensor Core GPUs power P5 instances?"; "" for any other clause."""
    found = _PASSIVE.match(" ".join(clause.split()).rstrip("."))
    if not found or not wh.startswith(("what", "which", "who")) or wh.startswith(("what date", "what time")):
        return ""
    verb = found.group("verb")
    if found.group("be") in ("is", "are"):
        base = base_form(verb)
        plural = wh.startswith("which ") and wh.endswith("s") and not wh.endswith("ss")
        verb = base if plural else third_person(base)
    return f"{upper_first(wh)} {verb} {lower_first(found.group('subject'))}?"


def reworded(question: str) -> list[str]:
    """``question`` with an attribute or a thing said otherwise: a variant per other word of each ``SYNONYMS``
    group and per wider word (``WIDER``, ``WIDER_ACTS``, ``DURATIONS``) found in it, and, when several are found,
    one with each said otherwise."""
    swaps: list[tuple[int, int, tuple[str, ...]]] = []
    for word, others in _SAYINGS:
        found = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-]|'(?!s))", question)  # not "GPU-based", "visitors'"
        if not found or any(found.start() < end and start < found.end() for start, end, _ in swaps):
            continue
        if word in _BASE_VERBS and _a_noun(question, found):
            continue
        if word in _WIDER_NOUNS and not _DETERMINED.search(question[: found.start()].lower()):
            continue
        if word in _DURATION_WORDS and not _DURATION_ASKED.search(question):  # "the actions an agent may take?"
            continue
        swaps.append((found.start(), found.end(), others))
    variants = [question[:start] + other + question[end:] for start, end, others in swaps for other in others]
    if len(swaps) > 1 and len({others[0] for _, _, others in swaps}) == len(swaps):  # not "people and people"
        every = question
        for start, end, others in sorted(swaps, reverse=True):
            every = every[:start] + others[0] + every[end:]
        variants.append(every)
    return variants


def said_otherwise(word: str) -> tuple[str, ...]:
    """The other words ``reworded`` may say ``word`` as ("crossing": "trip", "journey")."""
    return next((others for said, others in _SAYINGS if said == word), ())


def _a_noun(text: str, found: re.Match[str]) -> bool:
    """Whether the verb-like word ``found`` stands as a noun ("at launch", "The launch of", "head of sales")."""
    said = re.search(rf"(?:\b(?:{_NOUN_BEFORE})|'s)\s+$", text[: found.start()].lower())
    return bool(said) or text[found.end() :].startswith(" of ")


_NOUN_BEFORE = "at|since|after|before|on|for|of|by|upon|the|a|an|its|their|his|her|our|is|was"
_BASE_VERBS = frozenset("carry hold lead head build construct launch introduce announce unveil".split())
_WIDER_NOUNS = frozenset(word for word, _ in WIDER)
_DETERMINED = re.compile(r"(?:\b(?:which|what|how many|many|the|a|an|its|their|first)|'s|\d)\s+$")
_DURATION_WORDS = frozenset(word for word, _ in DURATIONS)
_EVENTS = "crossing|trip|journey|voyage|ride|flight|tour|show|film|concert|ceremony|event|race|match|course|meeting"
# A duration of an event asked, not what something takes to do ("... take to charge?")
_DURATION_ASKED = re.compile(
    rf"^(?=.*\b(?:how long|how much time|how many (?:seconds|minutes|hours|days|weeks|months))\b)"
    rf"(?=.*\b(?:{_EVENTS})\b)(?!.* to \w+\?$)",
    re.I,
)
# Each word and what it may be said as instead: the others of its ``SYNONYMS`` group, or its wider words.
_SAYINGS = [(word, tuple(o for o in group if o != word)) for group in SYNONYMS for word in group]
_SAYINGS += [*WIDER, *WIDER_ACTS, *DURATIONS]


def trimmed(clause: str) -> str:
    """``clause`` (its fact a marker) without the phrase after the fact that a question can do without ("recharges
    at Pellisk for <fact> between crossings from a shore battery" -> "... for <fact>") and without "today"; "" when
    nothing is cut."""
    words = [w for w in clause.split() if w.lower() != "today"]
    if MARK in words:
        at = words.index(MARK)
        after = words[at + 1 :]
        if len(after) >= 2 and after[0].lower() in _CUT_AT:
            words = words[: at + 1]
    cut = " ".join(words)
    return cut if cut != " ".join(clause.split()) and len(words) >= 3 else ""


# Where a phrase after the fact starts that a question can do without, and the prepositions that go first with the
# question words in an embedded question ("for how many minutes ..."); never "of", which belongs to a noun.
_CUT_AT = (PREPOSITIONS | {"against", "between", "across", "within"}) - {"of"}
_BOUNDS = frozenset("up than about around nearly almost over under".split())
# Ways of asking a question inside another: the embedded question ("how many passengers the Lumora Grand carries").
EMBEDDINGS = ("Do you know {}?", "Can you tell me {}?")


def embedded(clause: str, wh: str) -> str:
    """``clause`` (its fact a marker) as an embedded question, the question words first and no auxiliary moved
    ("how many passengers the Lumora Grand carries", "for how many minutes each boat recharges at Pellisk", "when
    the first departure leaves Pellisk"); "" where the fact sits inside a noun phrase ("has a <fact> mirror")."""
    words = clause.split()
    if MARK not in words or wh.endswith("-") or wh in ("what", "how many"):  # they stand for too much to move
        return ""
    at = words.index(MARK)
    before, after = words[:at], words[at + 1 :]
    if (after and after[0][0].isupper()) or (len(before) >= 2 and before[-2].lower() in _BOUNDS):
        return ""  # the fact is part of a longer name ("NVIDIA H100 Tensor Core GPUs"), or a bound ("up to 6 times")
    head = wh
    if before and before[-1].lower() in PREPOSITIONS | _CUT_AT:
        preposition = before.pop().lower()
        if wh in _TIME_OR_PLACE:
            head = "where" if wh == "where" else "when"
        elif preposition in _CUT_AT:
            head = f"{preposition} {wh}"
        else:
            return ""
    if (before and (before[-1].lower() in DETERMINERS | PREPOSITIONS or before[-1] in ("and", "or"))) or (
        after and after[0].lower() in ("of", "and", "or")
    ):
        return ""
    subject = lower_first(" ".join(before)) if before else ""
    verb = re.match(r"[A-Z][a-z]+s ([a-z]+[^s\W]) (?:the|a|an)\b", subject)
    if (verb and plain_present(verb.group(1))) or _PLURAL_OF.match(subject):  # "Developers describe the ...",
        subject = subject[0].lower() + subject[1:]  # "Tickets for ...": a common noun that opened the sentence
    return " ".join(f"{head} {subject} {' '.join(after)}".split()).strip(" ,")


_PLURAL_OF = re.compile(rf"[A-Z][a-z]+[^s']s (?:{'|'.join(sorted(PREPOSITIONS))})\b")


def name_pronouns(text: str, topic: str, names: tuple[str, ...] = ()) -> str:
    """``text`` with what a page says once it has named a thing named again: "it"/"its" as ``topic`` (with the
    article the page gives it: "the Quarro V4's top clock speed"), and "the observatory" as "the Orrin Observatory"
    where one name of the page (``names``) ends with that word, so that a question says which observatory, telescope
    or boat it asks about."""
    for name in names:
        head = name.split()[-1]
        if " " not in name or not head.isalpha() or sum(n.split()[-1] == head for n in names) > 1:
            continue
        text = re.sub(rf"\b([Tt]he) {head.lower()}\b(?![\w-])", rf"\1 {name}", text)
    if not topic:
        return text

    def said(found: re.Match[str], what: str) -> str:  # "It costs": "The Nimbus 16 costs"
        return upper_first(what) if found.group()[0].isupper() else what

    text = re.sub(r"\b[Ii]ts\b", lambda m: said(m, f"{topic}'s"), text)
    return re.sub(r"(?<![\w'])[Ii]t\b(?!')", lambda m: said(m, topic), text)
