"""The three kinds of generated rows: paraphrases, question-answer pairs and replay, each row filtered and
attributed to the passage (or prompt) it came from."""

from __future__ import annotations

import re
from typing import Any

from ..runtime.progress import Progress
from ..settings.stages import AugmentConfig
from .filters import answer_problem, normalized, paraphrase_problem
from .generators import ChatGenerator, LocalGenerator
from .passages import Passage, facts_of
from .prompts import PARAPHRASE_INSTRUCTIONS, answer_conversation, paraphrase_conversation, replay_prompts, user_turn
from .qa import generate_questions


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
    """Question-answer pairs for every fact of every sentence (``kinject.augment.qa``); with ``answers`` "generator"
    or "distill", the generator then answers each kept question from its passage."""
    rows = generate_questions(passages, generator, config, progress)
    if config.answers in ("generator", "distill"):
        _write_answers(rows, passages, generator, config, progress, fallback=config.answers == "distill")
    return rows


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
    from .matching import match_answer  # late, as in ``filters``: the eval package imports much more

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
