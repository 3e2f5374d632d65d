"""Scoring with a model: answers to probes, answer log-likelihood, KL divergence and perplexity.

``score_probes`` is the reusable scorer: one model (or one side of a PeftModel), a list of probes, a decoding
config; it returns one typed ``Answer`` per probe. ``evaluate`` calls it for the base and the adapter, and the
knowledge sweep calls it between epochs, so every number in the project is scored the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..augment.matching import is_correct
from ..models.generate import adapter_off, batches, chat_prompt_ids, generate_padded
from ..runtime.progress import Progress
from ..settings.stages import GenerationConfig
from .drift import base_answers, mean_kl, sequence_logits
from .probes import KINDS, EvalStopped, Probe

SAMPLING_SEED = 1234  # only used when temperature asks for sampling: base and adapter draw the same way


@dataclass
class Answer:
    """One side's answer to one probe."""

    text: str
    correct: bool | None  # None: a behaviour-only probe (no accepted answers)
    ended: bool  # the turn ended (EOS) within max_new_tokens
    logprob: float | None  # mean per-token log-prob of the best accepted answer; None without answers


@dataclass
class ProbeResult:
    """A probe, the form it was asked in, and the base's and the adapter's answers (None: that side not asked)."""

    probe: Probe
    form: str  # chat | completion | plain
    base: Answer | None = None
    adapter: Answer | None = None
    open_book: Answer | None = None  # the base with the pages in its prompt (knowledge probes)

    def side(self, name: str) -> Answer | None:
        return {"base": self.base, "adapter": self.adapter, "open_book": self.open_book}[name]

    def to_dict(self) -> dict[str, Any]:
        p = self.probe
        return {
            "id": p.id,
            "kind": p.kind,
            "origin": p.origin,
            "form": self.form,
            "question": p.question,
            "prompt": p.prompt,
            "answers": p.answers,
            "source_passage": p.source_passage,
            "base": asdict(self.base) if self.base else None,
            "adapter": asdict(self.adapter) if self.adapter else None,
            "open_book": asdict(self.open_book) if self.open_book else None,
        }


@dataclass
class Scores:
    """One side's scores (base or adapter). Accuracies and rates are None when nothing could be scored."""

    knowledge_accuracy: float | None
    retention_accuracy: float | None
    knowledge_logprob: float | None  # mean over probes of the best alias's mean per-token log-prob
    retention_logprob: float | None
    eos_rate: float | None  # share of chat answers that ended their turn within max_new_tokens
    knowledge_correct: int = 0
    knowledge_scored: int = 0
    retention_correct: int = 0
    retention_scored: int = 0
    chat_answers: int = 0
    chat_ended: int = 0
    chat_looping: int = 0  # chat answers whose end repeats one phrase (``looping``): a degenerate answer


@dataclass
class Forgetting:
    """What training cost on general data: KL over the base's own chat answers, perplexity on general text."""

    kl_mean: float
    ppl_ratio: float
    kl_max: float
    kl_per_prompt: dict[str, float]
    kl_tokens: int
    base_ppl: float
    adapter_ppl: float
    ppl_tokens: int


# ---------------------------------------------------------------------------------------------------- probes


def probe_form(probe: Probe, chat_model: bool) -> str:
    """chat (question through the chat template), completion (raw prompt), or plain (question as raw text)."""
    if probe.question and chat_model:
        return "chat"
    if probe.prompt:
        return "completion"
    return "plain"


def context_ids(tokenizer: Any, probe: Probe, form: str) -> list[int]:
    """The token ids a probe is asked with."""
    if form == "completion":
        return tokenizer(probe.prompt)["input_ids"]
    return chat_prompt_ids(tokenizer, [{"role": "user", "content": probe.question}])


def answer_ids(
    model: Any, tokenizer: Any, contexts: list[list[int]], gen: GenerationConfig, seeds: list[int]
) -> list[tuple[list[int], bool]]:
    """New ids and turn end for each context. Greedy decoding answers them in one batch (the same answers as one at
    a time); sampling answers one at a time, each with its own seed, so a set scored in pieces or whole draws
    alike."""
    if gen.greedy and len(contexts) > 1:
        return generate_padded(model, tokenizer, contexts, gen)
    return [generate_padded(model, tokenizer, [c], gen, [seed])[0] for c, seed in zip(contexts, seeds, strict=True)]


def score_probes(
    model: Any,
    tokenizer: Any,
    probes: list[Probe],
    generation: GenerationConfig,
    progress: Progress | None = None,
    logprob: bool = True,
    side: str = "",
    first_index: int = 0,
    batch_size: int = 1,
) -> list[Answer]:
    """Answer each probe with ``model`` as it is now (switch a PeftModel's adapter off around the call for the
    base) and score it: accuracy by alias, the turn's end, and the accepted answer's log-likelihood.

    Answers are generated ``batch_size`` at a time (similar prompt lengths together, fewer for long prompts).
    ``progress.should_stop()`` is checked before each batch and raises ``EvalStopped`` carrying the answers so
    far. ``first_index`` is the first probe's position in the whole set (it seeds sampling, so scoring a set in
    pieces draws as scoring it at once).
    """
    progress = progress or Progress()
    chat_model = bool(getattr(tokenizer, "chat_template", None))
    forms = [probe_form(p, chat_model) for p in probes]
    contexts = [context_ids(tokenizer, p, f) for p, f in zip(probes, forms, strict=True)]
    answers: list[Answer | None] = [None] * len(probes)
    if generation.greedy:
        chunks = batches(contexts, batch_size, generation.max_new_tokens)
    else:
        chunks = [[i] for i in range(len(probes))]
    for chunk in chunks:
        if progress.should_stop():
            done = answers[: answers.index(None)] if None in answers else answers
            raise EvalStopped("evaluation stopped before all probes were answered", done)
        seeds = [SAMPLING_SEED + first_index + i for i in chunk]
        outs = answer_ids(model, tokenizer, [contexts[i] for i in chunk], generation, seeds)
        for i, (new, ended) in zip(chunk, outs, strict=True):
            probe = probes[i]
            text = tokenizer.decode(new, skip_special_tokens=True).strip()
            best = best_logprob(model, tokenizer, contexts[i], probe, forms[i]) if logprob and probe.answers else None
            answers[i] = Answer(text, is_correct(text, probe.answers), ended, best)
            progress.advance(1, probe=probe.id, **({"side": side} if side else {}))
    return [a for a in answers if a is not None]


def summarize(results: list[ProbeResult], side: str) -> Scores:
    """One side's accuracies, mean log-probs and end-of-turn rate over ``results``."""
    answered = [(r, r.side(side)) for r in results if r.side(side) is not None]

    def correct(kind: str) -> list[bool]:
        return [a.correct for r, a in answered if r.probe.kind == kind and a.correct is not None]

    def logprobs(kind: str) -> list[float]:
        return [a.logprob for r, a in answered if r.probe.kind == kind and a.logprob is not None]

    chat = [a.ended for r, a in answered if r.form == "chat"]
    loops = [looping(a.text) for r, a in answered if r.form == "chat"]
    know, ret = correct(KINDS[0]), correct(KINDS[1])
    return Scores(
        knowledge_accuracy=mean([float(c) for c in know]),
        retention_accuracy=mean([float(c) for c in ret]),
        knowledge_logprob=mean(logprobs(KINDS[0])),
        retention_logprob=mean(logprobs(KINDS[1])),
        eos_rate=mean([float(e) for e in chat]),
        knowledge_correct=sum(know),
        knowledge_scored=len(know),
        retention_correct=sum(ret),
        retention_scored=len(ret),
        chat_answers=len(chat),
        chat_ended=sum(chat),
        chat_looping=sum(loops),
    )


def looping(text: str, times: int = 3, longest: int = 20, least: int = 12) -> bool:
    """Whether ``text`` ends in a loop: its last words one phrase of at most ``longest`` words said ``times`` times
    over (and at least ``least`` words), as "the balcony of the balcony of the balcony of ..." until the token
    limit. Why a turn did not end: a model that loops is broken, one that writes a long answer is not."""
    words = re.findall(r"\w+", text.lower())
    for period in range(1, longest + 1):
        span = max(times * period, least)
        if len(words) < span:
            break
        tail = words[-span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# ----------------------------------------------------------------------------------------------- likelihoods


def answer_logprob(model: Any, context: list[int], answer: list[int]) -> float:
    """Mean per-token log-probability of ``answer`` after ``context`` (teacher-forced)."""
    import torch

    logp = torch.log_softmax(sequence_logits(model, context + answer)[len(context) - 1 : -1], dim=-1)
    target = torch.tensor(answer, device=logp.device)[:, None]
    return logp.gather(1, target).mean().item()


def best_logprob(model: Any, tokenizer: Any, context: list[int], probe: Probe, form: str) -> float:
    """The best alias's mean per-token log-prob. In chat form a probe's completion prompt, when it has one, is
    teacher-forced as the start of the assistant's answer: a bare alias as an answer's first word ("H100") is
    unlikely under any fluent model, and an adapter that learnt to answer in full sentences would score lower."""
    lead = ""
    if form == "completion":
        lead = " "  # the alias continues the sentence
    elif probe.prompt:
        context = context + tokenizer(probe.prompt, add_special_tokens=False)["input_ids"]
        lead = " "
    return max(
        answer_logprob(model, context, tokenizer(lead + a, add_special_tokens=False)["input_ids"])
        for a in probe.answers
    )


def nll(model: Any, ids: list[int], chunk: int) -> tuple[float, int]:
    """Summed negative log-likelihood of a token stream in non-overlapping windows of ``chunk`` tokens."""
    import torch

    total, count = 0.0, 0
    for start in range(0, len(ids), chunk):
        piece = ids[start : start + chunk]
        if len(piece) < 2:
            break
        logits = sequence_logits(model, piece, double=False)[:-1]
        target = torch.tensor(piece[1:], device=logits.device)
        total += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        count += len(piece) - 1
    return total, count


def measure_forgetting(
    loaded: Any,
    prompts: list[dict[str, str]],
    text: str,
    kl_tokens: int,
    chunk: int,
    progress: Progress,
    batch_size: int = 1,
) -> Forgetting:
    """KL(base || adapter) over the base's own greedy answers to ``prompts`` (``kinject.eval.drift``, generated
    ``batch_size`` at a time), and the perplexity ratio on ``text`` (longer than the context on purpose: it is
    scored in windows of ``chunk`` tokens)."""
    model, tok = loaded.model, loaded.tokenizer
    answers = base_answers(model, tok, prompts, kl_tokens, batch_size, progress)
    per_prompt = mean_kl(model, answers, progress)
    ids = tok(text, verbose=False)["input_ids"]
    with adapter_off(model):
        base_nll, count = nll(model, ids, chunk)
    adapter_nll, _ = nll(model, ids, chunk)
    return Forgetting(
        kl_mean=mean(list(per_prompt.values())) or 0.0,
        ppl_ratio=math.exp((adapter_nll - base_nll) / count),
        kl_max=max(per_prompt.values(), default=0.0),
        kl_per_prompt=per_prompt,
        kl_tokens=sum(len(a.ids) - a.start for a in answers),
        base_ppl=math.exp(base_nll / count),
        adapter_ppl=math.exp(adapter_nll / count),
        ppl_tokens=count,
    )
