"""The three kinds of generated rows: paraphrases, question-answer pairs and replay, each row filtered and
attributed to the passage (or prompt) it came from."""

from __future__ import annotations

import random
import re
from typing import Any

from ..config import AugmentConfig
from ..progress import Progress
from .cloze import cloze_question, fact_clause, fact_spans
from .filters import answer_problem, normalized, paraphrase_problem, question_problem
from .generators import ChatGenerator, LocalGenerator
from .passages import Passage, asked_sentences, facts_of, topic_of
from .prompts import (
    PARAPHRASE_INSTRUCTIONS,
    TEMPLATES,
    answer_conversation,
    paraphrase_conversation,
    question_conversation,
    replay_prompts,
    user_turn,
)


def generate_paraphrases(
    passages: list[Passage], generator: ChatGenerator, config: AugmentConfig, progress: Progress
) -> list[dict[str, Any]]:
    """``paraphrases_per_passage`` rewrites of each passage, each under another instruction, filtered."""
    names = list(PARAPHRASE_INSTRUCTIONS)
    jobs = [
        (p, names[(i + k) % len(names)]) for i, p in enumerate(passages) for k in range(config.paraphrases_per_passage)
    ]
    progress.start("augment: paraphrases", total=len(jobs), unit="rewrite")
    conversations = [paraphrase_conversation(name, p.text) for p, name in jobs]
    texts = generator.chat(
        conversations, config.augment_max_new_tokens, config.augment_temperature, config.augment_seed
    )
    progress.finish()
    rows = []
    for (p, name), text in zip(jobs, texts, strict=True):
        problem = paraphrase_problem(p.text, text)
        rows.append(
            {
                "kind": "paraphrase",
                "passage": p.id,
                "source": p.source,
                "passage_text": p.text,
                "instruction": name,
                "text": text,
                "kept": not problem,
                "reason": problem,
            }
        )
    return rows


def generate_qa(
    passages: list[Passage], generator: ChatGenerator, config: AugmentConfig, progress: Progress
) -> list[dict[str, Any]]:
    """Question-answer pairs for every fact of every sentence: generator-written questions, template ones and
    (``cloze_questions``) the sentence's own; the answers the sentence, the fact's clause, the generator's, or the
    generator's where it states the fact, else the clause (``distill``)."""
    rng = random.Random(config.augment_seed)
    asks: list[tuple[Passage, str, str]] = []  # passage, sentence, fact
    rows: list[dict[str, Any]] = []
    for p in passages:
        for sentence in asked_sentences(p.text):
            asks += [(p, sentence, fact) for fact in facts_of(sentence)]
            templates = rng.sample(TEMPLATES, min(config.template_questions, len(TEMPLATES)))
            # "": nothing names a short subject, no template question
            topic = topic_of(sentence, p.title, p.text, p.heading)
            for template in templates if topic else ():
                rows.append(_qa_row(p, sentence, "", template.format(topic=topic), "template"))
    seen: set[tuple[str, str]] = set()
    if config.cloze_questions:
        rows += _cloze_rows(passages, seen)
    jobs = [(p, s, fact) for p, s, fact in asks for _ in range(config.questions_per_fact)]
    questions = _write_questions(jobs, generator, config, progress)
    for (p, sentence, fact), question in zip(jobs, questions, strict=True):
        rows.append(_asked(p, sentence, fact, question, "generator", seen))
    if config.answers in ("clause", "distill"):
        for row in rows:
            if row["fact"]:  # a template question asks about the whole sentence
                row["answer"] = fact_clause(row["sentence"], row["fact"])
    if config.answers in ("generator", "distill"):
        _write_answers(rows, passages, generator, config, progress, fallback=config.answers == "distill")
    return rows


def _cloze_rows(passages: list[Passage], seen: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """A question from each fact's own sentence (``cloze_question``), filtered as written ones are."""
    return [
        _asked(p, sentence, span.text, cloze_question(sentence, span), "cloze", seen, "no clause to ask from")
        for p in passages
        for sentence in asked_sentences(p.text)
        for span in fact_spans(sentence)
    ]


def _asked(
    p: Passage, sentence: str, fact: str, question: str, origin: str, seen: set[tuple[str, str]], empty: str = ""
) -> dict[str, Any]:
    """The row of a question about ``fact``, kept unless ``question_problem`` finds it unusable or the passage was
    asked it already (``seen``, updated); ``empty``: the reason for an empty question, when not that filter's."""
    row = _qa_row(p, sentence, fact, question, origin)
    problem = empty if empty and not question else question_problem(question, sentence, fact)
    if not problem and (p.id, normalized(question)) in seen:
        problem = "asked already"
    seen.add((p.id, normalized(question)))
    row.update(kept=not problem, reason=problem)
    return row


def _write_questions(
    jobs: list[tuple[Passage, str, str]], generator: ChatGenerator, config: AugmentConfig, progress: Progress
) -> list[str]:
    """One question per (passage, sentence, fact) job, its first line: the first of a fact greedy, the others
    sampled (one reliable phrasing, then variety)."""
    progress.start("augment: questions", total=len(jobs), unit="question")
    conversations = [question_conversation(s, fact) for _, s, fact in jobs]
    questions: list[str] = [""] * len(jobs)
    firsts = [i for i in range(len(jobs)) if i == 0 or jobs[i] != jobs[i - 1]]
    taken = set(firsts)
    others = [i for i in range(len(jobs)) if i not in taken]
    for group, temperature in ((firsts, 0.0), (others, config.augment_temperature)):
        if group:
            texts = generator.chat([conversations[i] for i in group], 48, temperature, config.augment_seed)
            for i, text in zip(group, texts, strict=True):
                questions[i] = text.strip().splitlines()[0].strip() if text.strip() else ""
    progress.finish()
    return questions


def _qa_row(p: Passage, sentence: str, fact: str, question: str, origin: str) -> dict[str, Any]:
    """A question-answer row; its answer the sentence (``answers`` "clause" cuts it to the fact's clause, "generator"
    and "distill" ask the generator)."""
    return {
        "kind": "qa",
        "passage": p.id,
        "source": p.source,
        "sentence": sentence,
        "fact": fact,
        "origin": origin,
        "question": question,
        "answer": sentence,
        "kept": True,
        "reason": "",
    }


def _write_answers(
    rows: list[dict[str, Any]],
    passages: list[Passage],
    generator: ChatGenerator,
    config: AugmentConfig,
    progress: Progress,
    fallback: bool = False,
) -> None:
    """Let the generator answer each kept question from its passage; keep only the answers ``teacher_problem``
    finds nothing wrong with. ``fallback``: a row whose answer fails keeps the answer it had (the fact's clause, or a
    template's sentence) and records the teacher's answer and why it was not used (``teacher``,
    ``teacher_reason``), instead of being dropped."""
    text = {p.id: p.text for p in passages}
    todo = [r for r in rows if r["kept"]]
    progress.start("augment: answers", total=len(todo), unit="answer")
    conversations = [answer_conversation(text[r["passage"]], r["question"]) for r in todo]
    answers = generator.chat(conversations, config.augment_max_new_tokens, 0.0, config.augment_seed)
    progress.finish()
    for row, answer in zip(todo, answers, strict=True):
        answer = whole_sentences(answer)
        problem = teacher_problem(answer, row, text[row["passage"]])
        if fallback:  # the teacher's answer and why it was not used, shown with the row
            row.update(teacher=answer, teacher_reason=problem)
            if not problem:
                row["answer"] = answer
        else:
            row.update(answer=answer, kept=not problem, reason=f"answer {problem}" if problem else "")


def teacher_answers(rows: list[dict]) -> int | None:
    """How many kept rows answer in the generator's words under ``--answers distill`` (the rest keep the source's);
    None for a set whose answers were not distilled."""
    taught = [r for r in rows if r.get("kept") and "teacher" in r]
    return sum(not r["teacher_reason"] for r in taught) if taught else None


def whole_sentences(answer: str) -> str:
    """``answer`` without a last sentence cut off at the length limit ("" when no sentence ends): a cut answer
    would be trained as a finished turn."""
    answer = answer.strip()
    if not answer or answer[-1] in '.!?"\u201d)':
        return answer
    ends = [m.end() for m in re.finditer(r'[.!?]["\u201d)]?(?=\s)', answer)]
    return answer[: ends[-1]] if ends else ""


def teacher_problem(answer: str, row: dict[str, Any], passage: str) -> str:
    """Why the generator's ``answer`` to ``row``'s question is not a training answer ("" when it is): the passage
    does not support it, it misses the fact asked (for a template question, every fact of its sentence), or the
    question names the fact already (an echo of the question would pass)."""
    from ..eval.matching import match_answer  # late, as in ``filters``: the eval package imports much more

    if not answer:
        return "is empty or cut off"
    problem = answer_problem(answer, passage)
    if problem:
        return problem
    fact = row["fact"]
    if fact and normalized(fact) in normalized(row["question"]):
        return f"the question names {fact} already"
    facts = [fact] if fact else facts_of(row["sentence"])
    if facts and match_answer(answer, facts) is None:
        return f"does not state {fact or 'a fact of its sentence'}"
    return ""


def generate_replay(base: LocalGenerator, config: AugmentConfig, progress: Progress) -> list[dict[str, Any]]:
    """The base model's own greedy answers to ``replay_prompts`` general prompts (self-distillation data). An
    answer cut at ``augment_max_new_tokens`` is kept as it is, without an end of turn (``ended`` says which)."""
    prompts = replay_prompts()[: config.replay_prompts]
    progress.start("augment: replay", total=len(prompts), unit="answer")
    answers = base.chat_with_ends([user_turn(p["prompt"]) for p in prompts], config.augment_max_new_tokens, 0.0, 0)
    progress.finish()
    return [
        {
            "kind": "replay",
            "prompt_id": p["id"],
            "question": p["prompt"],
            "answer": text,
            "ended": ended,
            "kept": bool(text.strip()),
            "reason": "" if text.strip() else "empty",
        }
        for p, (text, ended) in zip(prompts, answers, strict=True)
    ]
