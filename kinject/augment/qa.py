"""Question-answer pairs for every fact of the pages: questions that ask for exactly that fact, in several phrasings,
answered by a sentence that states it.

For every fact of every sentence (a date, time, number or name; ``facts.asked_spans``):

1. questions made from the fact's own sentence (``questions.fact_questions``: cloze, fronted, the relation an
   apposition states; with the subject's short name and an attribute said otherwise), which ask for the fact by
   construction;
2. the generator's rewordings of those (``rewrites`` of each: the first greedy, the others sampled) and, asked for,
   questions it writes from scratch with the fact marked (``questions_per_fact``);
3. the *round trip* (Alberti et al. 2019): a question a model wrote is kept only when the generator, reading the
   passage, answers it with the fact, so a question that asks about something else is dropped, whoever wrote it;
4. at most ``kept_per_fact`` questions a fact, the phrasings spread over the rules that made them;
5. the answer: the fact's clause with its subject (``answers`` "fact"), or another form of ``AnswerSource``.

Fixed templates about a sentence's subject ("Tell me about X.", answered with the sentence) are still there to ask
for (``template_questions``), not by default: they teach reciting a sentence, not answering a question.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from ..runtime.progress import Progress
from ..settings.stages import AugmentConfig
from .cloze import _names_number, fact_clause
from .context import PartForms, mentioned, name_first, named_things, referenced, the_name, with_context
from .english import lower_first, name_pronouns, said_otherwise
from .facts import Span, asked_spans, name_spans, page_names, person_named, sentence_topics, with_person
from .filters import dropped_names, normalized, question_problem
from .generators import ChatGenerator
from .naming import apposition_names, described_names, in_full, model_codes, short_names
from .passages import Passage, asked_sentences, topic_of
from .prompts import TEMPLATES, answer_conversation, question_conversation, rewrite_conversation
from .questions import Question, fact_questions, fact_sentence
from .relations import makers

READER_TOKENS = 32  # the round trip's answers: enough for a sentence that states the fact
# The order in which a fact's questions are kept, so that the phrasings spread over the rules that made them (words
# said otherwise before the same words embedded in "Do you know ...").
ORIGIN_ORDER = (
    "relation",
    "fronted",
    "described",
    "rewrite",
    "cloze",
    "trimmed",
    "reworded",
    "embedded",
    "written",
    "short",
    "sampled",
)


@dataclass
class Fact:
    """One fact of one sentence: where it is, and the subject its sentence's "it" stands for."""

    passage: Passage
    sentence: str
    span: Span
    topic: str
    names: tuple[str, ...] = ()  # the specific names of its page, for naming "the observatory" (``name_pronouns``)
    subjects: PartForms | None = None  # its part as the sentence says it, then said otherwise (``name_first``)

    @property
    def text(self) -> str:
        return self.span.text

    @property
    def key(self) -> tuple[str, str, str]:
        """Its passage, sentence and text: what ``row_fact`` reads from a row asking for it."""
        return self.passage.id, self.sentence, self.text


def row_fact(row: dict[str, Any]) -> tuple[str, str, str]:
    """The ``Fact.key`` of the fact a question-answer row asks for."""
    return row["passage"], row["sentence"], row["fact"]


def page_facts(passages: list[Passage]) -> list[Fact]:
    """Every fact of every asked sentence of ``passages``, in order; a sentence that leaves its thing to the ones
    before says it (``context.with_context``)."""
    facts = []
    by_source: dict[str, list[str]] = defaultdict(list)
    texts: dict[str, str] = defaultdict(str)
    for p in passages:
        by_source[p.source] += page_names([p.text])
        texts[p.source] += f"{p.text}\n\n"
    things = {s: named_things(t) for s, t in texts.items()}
    referred = {s: referenced(t, by_source[s] + things[s]) for s, t in texts.items()}
    last: dict[str, str] = {}  # per source, the last thing named so far: what a paragraph opening "Its ..." means
    current: dict[str, str] = {}  # per source, the thing the page refers back to that it named last
    articled: dict[tuple[str, str], str] = {}  # per source and topic, the topic with the article the page gives it
    for p in passages:
        names = tuple(dict.fromkeys(by_source[p.source] + things[p.source]))
        sentences = asked_sentences(p.text)
        first = name_spans(p.text)
        fallback = topic_of(sentences[0], p.title, p.text, p.heading) if sentences else ""
        if sentences and last.get(p.source) and (re.match(r"(?:It|Its)\b", sentences[0]) or not first):
            fallback = last[p.source]  # a paragraph that names nothing goes on about what the one before named
        people = [""] * len(sentences)
        for i, sentence in enumerate(sentences):  # "She joined Halvren ...": the person the sentence before named
            people[i] = person_named(sentences[i - 1]) if i else ""
            sentences[i] = with_person(sentence, people[i])
        named = [name_pronouns(sentence, "", names) for sentence in sentences]  # "the line": the Harbor Line
        topics = sentence_topics([*named, ""], fallback or (first[0].text if first else ""))
        for sentence, topic, person in zip(sentences, topics, people, strict=False):
            said, added = with_context(sentence, current.get(p.source, ""), texts[p.source], referred[p.source])
            current[p.source] = mentioned(sentence, referred[p.source], current.get(p.source, "")) or current.get(
                p.source, ""
            )
            spans = [  # not the person we named, nor the number of a name ("Nimbus 12"), nor the thing we said
                s
                for s in asked_spans(said)
                if s.text != person and not _names_number(said, s) and not (added and added[0] <= s.start < added[1])
            ]
            if topic and (p.source, topic) not in articled:  # "Its clock": "the Quarro V4's clock"
                articled[(p.source, topic)] = the_name(topic, texts[p.source])
            subjects = name_first(said, added, current.get(p.source, ""), texts[p.source])
            facts += [Fact(p, said, span, articled.get((p.source, topic), topic), names, subjects) for span in spans]
        if topics[-1]:
            last[p.source] = topics[-1]
    return facts


def qa_row(fact: Fact | None, p: Passage, sentence: str, question: str, origin: str) -> dict[str, Any]:
    """A question-answer row; its answer is filled in by ``_answer``."""
    return {
        "kind": "qa",
        "passage": p.id,
        "source": p.source,
        "sentence": sentence,
        "fact": fact.text if fact else "",
        "origin": origin,
        "question": question,
        "answer": sentence,
        "kept": True,
        "reason": "",
    }


def generate_questions(
    passages: list[Passage], generator: ChatGenerator, config: AugmentConfig, progress: Progress
) -> list[dict[str, Any]]:
    """Question-answer rows for every fact of ``passages`` (see the module's docstring), kept or not and why."""
    facts = page_facts(passages)
    short = short_names(page_names([p.text for p in passages]))
    described = described_names([p.text for p in passages])
    appositions = apposition_names([p.text for p in passages])
    products = makers([p.text for p in passages])
    codes = model_codes([p.text for p in passages])
    rows: list[dict[str, Any]] = []
    for fact in facts:
        made = (
            fact_questions(fact.sentence, fact.span, fact.topic, short, fact.names, described, products, codes)
            if config.sentence_questions
            else []
        )
        asked = subjects_in_turn(made, fact.subjects)
        rows += [qa_row(fact, fact.passage, fact.sentence, q.text, _origin(q.origin)) for q in asked]
        rows += [  # of the page's own words: "the crossing of <a long description>", not "<description>'s crossing"
            qa_row(fact, fact.passage, fact.sentence, q, "described") for q in described_as(made, fact, appositions)
        ]
    rows += _rewrites(facts, rows, generator, config, progress)
    rows += _written(facts, generator, config, progress)
    rows += _templates(passages, config)
    _filter(rows, config.round_trip, short, {name for f in facts for name in f.names})
    if config.round_trip:
        round_trip([r for r in rows if r["kept"] and r["origin"] in MODEL_ORIGINS], facts, generator, progress)
    _answer(rows, facts, config, codes)
    _keep_per_fact(rows, config.kept_per_fact)
    return rows


MODEL_ORIGINS = ("rewrite", "sampled", "written")


def subjects_in_turn(made: list[Question], subjects: PartForms | None) -> list[Question]:
    """``made`` with its part said in each of ``subjects``' forms in turn, question after question that says it as
    the sentence does or in a wider word ("the trip of the Lumora line"): users also ask about "the Halden Telescope
    project" or "the trip on the Lumora line", not only "the project of the Halden Telescope", and a model trained on
    one wording alone can miss the other."""
    if subjects is None or len(subjects.forms) < 2:
        return made
    words = (subjects.part, *said_otherwise(subjects.part))
    first = re.escape(subjects.forms[0][1:]).replace(re.escape("{}"), f"({'|'.join(map(re.escape, words))})")
    said = re.compile(rf"\b[Tt]{first}\b")
    # Each word its own turn, so that every form is said with "trip" too; the wider words start from the last form,
    # so that the first questions, those a cap keeps, say "the trip on the Lumora line" and "the Lumora line journey".
    turns = {word: -i for i, word in enumerate(words)}
    out = []
    for q in made:
        found = said.search(q.text)
        if found:
            word = found.group(1)
            form = subjects.forms[turns[word] % len(subjects.forms)].format(word)
            form = form if found.group(0)[0] == "T" else lower_first(form)
            q = replace(q, text=q.text[: found.start()] + form + q.text[found.end() :])
            turns[word] += 1
        out.append(q)
    return out


def described_as(made: list[Any], fact: Fact, appositions: dict[str, list[str]]) -> list[str]:
    """The relation questions of a fact asked of a thing as its page describes it in an apposition ("Which company
    opened the electric ferry service that links ... Pellisk with ... Varnholm?" beside "... the Lumora line?"), one a
    description (``apposition_names``: "... service between Pellisk and Varnholm" too), each in the next relation
    question, never one whose description states the fact."""
    relations = [q for q in made if q.origin == "relation"]
    for name, said in appositions.items():
        pattern = re.compile(rf"\b(?:[Tt]he )?{re.escape(name)}\b(?! [A-Z0-9])")  # not "... Telescope Mini"
        naming = [(q, found) for q in relations for found in [pattern.search(q.text)] if found]
        if not naming or fact.text.lower() in said[0].lower() or name in fact.text:
            continue
        asked = []
        for i, description in enumerate(said):
            q, found = naming[i % len(naming)]
            asked.append(q.text[: found.start()] + description + q.text[found.end() :])
        return list(dict.fromkeys(asked))
    return []


def _origin(rule: str) -> str:
    """A sentence rule's origin as the report groups it: "short" and "reworded" variants apart."""
    for variant in ("reworded", "short", "described", "trimmed"):
        if f"+{variant}" in rule:
            return variant
    return rule


def _rewrites(
    facts: list[Fact], rows: list[dict[str, Any]], generator: ChatGenerator, config: AugmentConfig, progress: Progress
) -> list[dict[str, Any]]:
    """The generator's rewordings of each fact's questions made by a rule (not their variants): ``rewrites`` of
    each, and more of a fact's own in turn, sampled, until the fact has ``rewrites_per_fact``."""
    if not config.rewrites:
        return []
    by_fact = {f.key: f for f in facts}
    bases = [r for r in rows if r["origin"] in ("cloze", "fronted", "relation")]
    jobs = [(r, k) for r in bases for k in range(config.rewrites)]
    per_fact: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in bases:
        per_fact[row_fact(r)].append(r)
    for own in per_fact.values():  # a fact its sentence asks few ways: those reworded again, sampled
        jobs += [
            (own[i % len(own)], config.rewrites + i)
            for i in range(config.rewrites_per_fact - len(own) * config.rewrites)
        ]
    if not jobs:
        return []
    progress.start("augment: rewordings", total=len(jobs), unit="question")
    out: list[str] = [""] * len(jobs)
    for k, temperature in ((0, 0.0), (1, config.augment_temperature)):
        group = [i for i, (_, n) in enumerate(jobs) if (n == 0) == (k == 0)]
        if group:
            texts = generator.chat(
                [rewrite_conversation(jobs[i][0]["question"]) for i in group], 48, temperature, config.augment_seed
            )
            for i, text in zip(group, texts, strict=True):
                out[i] = text.strip().splitlines()[0].strip().strip('"') if text.strip() else ""
    progress.finish()
    made = []
    for (row, n), question in zip(jobs, out, strict=True):
        fact = by_fact[row_fact(row)]
        made.append(qa_row(fact, fact.passage, fact.sentence, question, "rewrite" if n == 0 else "sampled"))
        made[-1]["rewords"] = row["question"]
    return made


def _written(
    facts: list[Fact], generator: ChatGenerator, config: AugmentConfig, progress: Progress
) -> list[dict[str, Any]]:
    """``questions_per_fact`` questions the generator writes for each fact from its sentence, the fact marked: the
    first greedy, the others sampled."""
    jobs = [f for f in facts for _ in range(config.questions_per_fact)]
    if not jobs:
        return []
    progress.start("augment: questions", total=len(jobs), unit="question")
    questions: list[str] = [""] * len(jobs)
    firsts = [i for i in range(len(jobs)) if i == 0 or jobs[i] is not jobs[i - 1]]
    others = sorted(set(range(len(jobs))) - set(firsts))
    for group, temperature in ((firsts, 0.0), (others, config.augment_temperature)):
        if group:
            conversations = [question_conversation(jobs[i].sentence, jobs[i].text) for i in group]
            texts = generator.chat(conversations, 48, temperature, config.augment_seed)
            for i, text in zip(group, texts, strict=True):
                questions[i] = text.strip().splitlines()[0].strip() if text.strip() else ""
    progress.finish()
    return [qa_row(f, f.passage, f.sentence, q, "written") for f, q in zip(jobs, questions, strict=True)]


def _templates(passages: list[Passage], config: AugmentConfig) -> list[dict[str, Any]]:
    """``template_questions`` fixed questions about each sentence's subject, answered with the sentence."""
    if not config.template_questions:
        return []
    rng = random.Random(config.augment_seed)
    rows = []
    for p in passages:
        for sentence in asked_sentences(p.text):
            topic = topic_of(sentence, p.title, p.text, p.heading)
            templates = rng.sample(TEMPLATES, min(config.template_questions, len(TEMPLATES)))
            rows += [qa_row(None, p, sentence, t.format(topic=topic), "template") for t in templates if topic]
    return rows


def _filter(rows: list[dict[str, Any]], checked_by_reader: bool, short: dict[str, str], names: set[str]) -> None:
    """Drop what ``question_problem`` finds unusable, a rewording that drops a name of the page's ``names`` that its
    question says (``dropped_names``), a question that names the fact it asks for (it would be answered by an echo),
    and a question its passage was asked already. A question the round trip will check may use words of its own (the
    reader tells whether it asks for the fact), and so may one a rule made from the sentence with "it" named ("How
    much does the Tidewell T2 cost?" from "Utilities can order it for 89 euros")."""
    seen: set[tuple[str, str]] = set()
    for row in rows:
        own_words = checked_by_reader or row["origin"] not in MODEL_ORIGINS
        if not row["question"]:
            problem = "empty"
        elif row["origin"] == "template":  # fixed wording about the sentence's subject: nothing to check
            problem = ""
        else:
            problem = question_problem(row["question"], row["sentence"], row["fact"], shares_words=not own_words)
        dropped = dropped_names(row["rewords"], row["question"], names) if row.get("rewords") else []
        if not problem and dropped:
            problem = f"drops {', '.join(dropped)}, which the question it rewords names"
        named = [n for n in (row["fact"], short.get(row["fact"], "")) if n]
        asked = f" {normalized(row['question'])} "
        if not problem and any(f" {normalized(n)} " in asked for n in named):
            problem = f"names {row['fact']}, the fact it asks for"
        key = (row["passage"], normalized(row["question"]))
        if not problem and key in seen and row["origin"] != "template":  # one sentence's, another's subject
            problem = "asked already"
        seen.add(key)
        row.update(kept=not problem, reason=problem)


def round_trip(rows: list[dict[str, Any]], facts: list[Fact], reader: ChatGenerator, progress: Progress) -> None:
    """Keep each row only when ``reader``, given its passage, answers its question with its fact, before any other
    fact of the passage of the same kind (``facts``, from ``page_facts``): a reader that recites the sentence "cast
    by Feldt & Sorn and weighs 19 tonnes" has answered a question about the weight, not one about the maker. The
    reader's answer is kept with the row (``reader``)."""
    if not rows:
        return
    from .matching import alias_position

    text = {f.passage.id: f.passage.text for f in facts}
    others: dict[str, list[Span]] = defaultdict(list)
    for fact in facts:
        others[fact.passage.id].append(fact.span)
    progress.start("augment: round trip", total=len(rows), unit="question")
    answers = reader.chat(
        [answer_conversation(text[r["passage"]], r["question"]) for r in rows], READER_TOKENS, 0.0, 0
    )
    progress.finish()
    for row, answer in zip(rows, answers, strict=True):
        row["reader"] = answer
        # a fact the question names is its context, not an answer
        named = [f for f in others[row["passage"]] if alias_position(row["question"], [f.text]) is not None]
        first = first_fact(answer, row["fact"], [f for f in others[row["passage"]] if f not in named])
        if first != row["fact"]:
            said = f"answered with {first}" if first else "not answered with the fact"
            row.update(kept=False, reason=f"the round trip: read with its passage, it is {said}")


def first_fact(answer: str, fact: str, facts: list[Span]) -> str:
    """Which of ``facts`` of the asked fact's kind (names, or dates and numbers) ``answer`` states first ("" when
    none); ``fact`` itself when it is stated and no other of its kind comes before it."""
    from .matching import alias_position

    kind = next((s.kind == "name" for s in facts if s.text == fact), None)
    places = []
    for span in facts:
        if kind is not None and (span.kind == "name") != kind and span.text != fact:
            continue
        at = alias_position(answer, fact_aliases(span.text))
        if at is not None:
            places.append((at, span.text != fact, span.text))
    if not any(name == fact for _, _, name in places):
        return ""
    return min(places)[2]


def fact_aliases(fact: str) -> list[str]:
    """The forms of a fact an answer may state it in: the whole, and a number without its unit ("410" of "410
    passengers", "88 million" of "88 million euros")."""
    from .facts import numeric_spans

    aliases = [fact]
    for span in numeric_spans(fact):
        number = span.text.split()[0]
        aliases += [span.text, number] if span.kind == "number" else [span.text]
    return list(dict.fromkeys(aliases))


def _answer(rows: list[dict[str, Any]], facts: list[Fact], config: AugmentConfig, codes: dict[str, str]) -> None:
    """Each row's answer: "fact" (the fact's clause with its subject), "one-fact" (that clause without the other
    half of a coordination), "clause" (the fact's clause), "sentence";
    "generator" and "distill" start from the fact's clause and are written by ``generation`` afterwards; a model
    code said alone is said in full (``codes``, ``naming.model_codes``)."""
    by_fact = {f.key: f for f in facts}
    for row in rows:
        if not row["fact"] or config.answers == "sentence":
            continue
        fact = by_fact.get(row_fact(row))
        if config.answers in ("fact", "one-fact") and fact is not None:
            split = config.answers == "one-fact"
            row["answer"] = in_full(fact_sentence(fact.sentence, fact.span, fact.topic, fact.names, split), codes)
        else:
            row["answer"] = fact_clause(row["sentence"], row["fact"])


def _keep_per_fact(rows: list[dict[str, Any]], most: int) -> None:
    """At most ``most`` kept questions a fact, taken in turn from each origin (``ORIGIN_ORDER``)."""
    by_fact: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["kept"] and row["fact"]:
            by_fact[row_fact(row)][row["origin"]].append(row)
    for origins in by_fact.values():
        queues = [origins[o] for o in ORIGIN_ORDER if origins.get(o)]
        taken = 0
        while any(queues):
            for queue in queues:
                if queue:
                    row = queue.pop(0)
                    if taken >= most:
                        row.update(kept=False, reason=f"over {most} questions for this fact")
                    taken += 1
