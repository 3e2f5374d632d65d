"""Drift from the base: KL(base || adapter) per token over the base model's own greedy answers, the one KL scorer.

Forgetting tracks the KL divergence from the base model (Shenfeld et al., "RL's Razor", 2025). The evaluation's
forgetting measure (``metrics.measure_forgetting``) and the forgetting guard during training
(``kinject.training.guard``) both measure it here: the base's greedy answers to general chat prompts are generated
once with the base's log-probabilities over them (``base_answers``; the end of the turn counts, as ending it is part
of the behaviour), then the adapter is scored on them (``mean_kl``). The base is the same PeftModel with its adapter
switched off (``adapter_off``), so no second model is loaded and both sides see identical weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models.batch import training_off
from ..models.generate import adapter_off, batches, chat_prompt_ids, generate_padded
from ..runtime.progress import Progress
from ..settings.stages import GenerationConfig
from .probes import EvalStopped


@dataclass
class BaseAnswer:
    """One general prompt with the base model's greedy answer: ``ids`` is the prompt's chat turn and the answer
    (with the end of the turn when it ended), whose tokens from ``start`` on are scored; ``logprobs``, the base's
    next-token log-probabilities over them, computed once (the base does not change)."""

    id: str
    ids: list[int]
    start: int
    logprobs: Any = None


def sequence_logits(model: Any, ids: list[int], double: bool = True) -> Any:
    """The next-token logits at every position of ``ids`` (float64 by default: a log-likelihood sums many small
    differences; the KL's float32 log-probabilities are kept for every check of the guard)."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0]
    return logits.double() if double else logits.float()


def base_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[dict[str, str]],
    max_new_tokens: int,
    batch_size: int,
    progress: Progress | None = None,
) -> list[BaseAnswer]:
    """The base model's greedy answers to ``prompts`` (``{"id", "prompt"}``), ``batch_size`` at a time; a prompt the
    base answers with nothing at all is left out. ``progress.should_stop()`` between batches raises
    ``EvalStopped``."""
    progress = progress or Progress()
    greedy = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    contexts = [chat_prompt_ids(tokenizer, [{"role": "user", "content": p["prompt"]}]) for p in prompts]
    answers: list[tuple[list[int], bool]] = [([], False)] * len(prompts)
    with adapter_off(model):
        for group in batches(contexts, batch_size, max_new_tokens):
            if progress.should_stop():
                raise EvalStopped("evaluation stopped while measuring forgetting")
            for i, answer in zip(
                group, generate_padded(model, tokenizer, [contexts[i] for i in group], greedy), strict=True
            ):
                answers[i] = answer
    out = []
    with adapter_off(model), training_off(model):
        for prompt, context, (new, ended) in zip(prompts, contexts, answers, strict=True):
            target = new + ([tokenizer.eos_token_id] if ended else [])
            if target:
                ids = context + target
                out.append(BaseAnswer(prompt["id"], ids, len(context), _logprobs(model, ids, len(context))))
    return out


def _logprobs(model: Any, ids: list[int], start: int) -> Any:
    """The next-token log-probabilities at every position that predicts ``ids[start:]``."""
    import torch

    return torch.log_softmax(sequence_logits(model, ids, double=False)[start - 1 : -1], dim=-1)


def kl_per_token(model: Any, answer: BaseAnswer) -> Any:
    """KL(base || adapter) of the next-token distributions at every position of the base's ``answer``."""
    base, adapted = answer.logprobs, _logprobs(model, answer.ids, answer.start)
    return (base.exp() * (base - adapted)).sum(-1)


def mean_kl(model: Any, answers: list[BaseAnswer], progress: Progress | None = None) -> dict[str, float]:
    """Each answer's mean KL(base || adapter) per token, by prompt id (rounding can leave -1e-17: read as 0).
    ``progress`` advances one a prompt; its ``should_stop()`` raises ``EvalStopped``."""
    progress = progress or Progress()
    per_prompt = {}
    with training_off(model):
        for answer in answers:
            if progress.should_stop():
                raise EvalStopped("evaluation stopped while measuring forgetting")
            per_prompt[answer.id] = max(kl_per_token(model, answer).mean().item(), 0.0)
            progress.advance(1, prompt=answer.id)
    return per_prompt
