"""One answer's decoding, the token choice of every answer kinject generates: its settings (TGI's
``GenerateParameters``, ``Params``), its next token from a row of logits, when it stops, and what it produced. A
``Batch`` (``kinject.models.batch``) keeps one ``Sequence`` per row; everything here is about one row, so answers
with different settings share a batch.

An answer stops at the end-of-turn token, at a stop sequence (matched on the decoded tail, so a long stop costs its
length per token, not a table over the vocabulary), at its token budget, or as soon as its ``cancel`` event is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..settings.stages import GenerationConfig

GREEDY_BELOW = 1e-3  # a temperature this small is greedy in effect, and dividing by it makes logits infinite
MIN_REPETITION_PENALTY = 1e-2  # a smaller (valid, > 0) penalty multiplies logits past float range


@dataclass
class Params:
    """Decoding settings of one request (TGI's ``GenerateParameters``, validated)."""

    max_new_tokens: int = GenerationConfig.max_new_tokens
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    do_sample: bool = False
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    @classmethod
    def from_generation(cls, gen: GenerationConfig) -> Params:
        """kinject's decoding settings as a request's (greedy at or below temperature 0.05, as kinject decodes)."""
        if gen.greedy:
            return cls(max_new_tokens=gen.max_new_tokens, repetition_penalty=gen.repetition_penalty)
        return cls(
            max_new_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p if gen.top_p < 1 else None,
            repetition_penalty=gen.repetition_penalty,
            do_sample=True,
        )

    @property
    def sampling(self) -> bool:
        """TGI samples when asked to, or when a sampling setting is given; a temperature of 0 (or one so small that
        dividing by it overflows the logits, below ``GREEDY_BELOW``) means greedy."""
        if self.temperature is not None and self.temperature < GREEDY_BELOW:
            return False
        return self.do_sample or any(v is not None for v in (self.temperature, self.top_p, self.top_k))

    def request_seed(self) -> int | None:
        """The seed a request samples with (its own, else one drawn from the clock); None when greedy."""
        if self.seed is not None:
            return self.seed
        return int(time.time() * 1000) % 2**31 if self.sampling else None


@dataclass
class TokenOut:
    id: int
    text: str
    logprob: float | None
    special: bool


@dataclass
class Generation:
    """What one request produced."""

    tokens: list[TokenOut]
    text: str
    finish_reason: str  # length | eos_token | stop_sequence | cancelled
    input_length: int
    seed: int | None
    queued_s: float = 0.0  # waiting for a place in the batch
    generate_s: float = 0.0  # from joining the batch to the last token


class Sequence:
    """One request in the batch: its prompt, settings and tokens so far; picks its next token from its row of
    logits and says when it is finished. ``on_token(TokenOut)`` is called as each token is made."""

    def __init__(
        self,
        tokenizer: Any,
        input_ids: list[int],
        params: Params,
        adapter: str | None = None,
        on_token: Callable[[TokenOut], None] | None = None,
        cancel: threading.Event | None = None,
    ):
        self.tokenizer, self.input_ids, self.params, self.adapter = tokenizer, input_ids, params, adapter
        self.on_token, self.cancel = on_token, cancel or threading.Event()
        self.special = set(tokenizer.all_special_ids)
        self.eos = tokenizer.eos_token_id
        self.seed = params.request_seed()
        self.generator: Any = None
        self.tokens: list[TokenOut] = []
        self.finish: str | None = None
        self.matched: str | None = None
        self.error: BaseException | None = None
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.done = threading.Event()
        self.result: Generation | None = None
        self._tail_tokens = max((len(s) for s in params.stop), default=0) + 2  # a token is at least one character

    # ---------------------------------------------------------------------------------------------- decoding
    def next_token(self, logits: Any) -> int:
        """Choose the next token from this row's logits (repetition penalty, then temperature, top-k, top-p, as
        transformers' ``generate`` orders them), record it and hand it to ``on_token``."""
        import torch

        params = self.params
        scores = logits.float()[None]
        penalty = max(params.repetition_penalty or 1.0, MIN_REPETITION_PENALTY)
        if penalty != 1.0:
            seen = torch.tensor([self.input_ids + [t.id for t in self.tokens]], device=scores.device)
            picked = torch.gather(scores, 1, seen)
            picked = torch.where(picked < 0, picked * penalty, picked / penalty)
            scores = scores.scatter(1, seen, picked)
        if params.sampling:
            scores = _warped(scores, params)
            if self.generator is None:
                self.generator = torch.Generator(device=scores.device)
                self.generator.manual_seed(self.seed)
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator)[0, 0])
        else:
            token = int(torch.argmax(scores, dim=-1)[0])
        logprob = float(torch.log_softmax(scores, dim=-1)[0, token])
        special = token in self.special
        out = TokenOut(token, "" if special else self.tokenizer.decode([token]), logprob, special)
        self.tokens.append(out)
        if self.on_token is not None:
            self.on_token(out)
        self._check_finished()
        return token

    def _check_finished(self) -> None:
        if self.tokens[-1].id == self.eos:
            self.finish = "eos_token"
        elif self.params.stop and self._stop_matched():
            self.finish = "stop_sequence"
        elif len(self.tokens) >= self.params.max_new_tokens:
            self.finish = "length"
        elif self.cancel.is_set():
            self.finish = "cancelled"

    def _stop_matched(self) -> bool:
        tail = [t.id for t in self.tokens[-self._tail_tokens :]]
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        self.matched = next((s for s in self.params.stop if text.endswith(s)), None)
        return self.matched is not None

    # ---------------------------------------------------------------------------------------------- the end
    def end(self, error: BaseException | None = None) -> None:
        """Finish the request (with ``error``, its caller raises it) and wake the caller."""
        if self.done.is_set():
            return
        self.error = error
        if error is None:
            finish = self.finish or "cancelled"
            ids = [t.id for t in self.tokens]
            text_ids = ids[: ids.index(self.eos)] if self.eos in ids else ids
            now = time.monotonic()
            started = self.started if self.started is not None else now
            self.result = Generation(
                self.tokens,
                self.tokenizer.decode(text_ids, skip_special_tokens=True),
                finish,
                len(self.input_ids),
                self.seed,
                started - self.submitted,
                now - started,
            )
        self.done.set()


def _warped(scores: Any, params: Params) -> Any:
    """Temperature, then top-k, then top-p on one row of scores (masked tokens at -inf)."""
    import torch

    scores = scores / (params.temperature or 1.0)
    if params.top_k:
        k = min(params.top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p is not None and params.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - params.top_p)
        drop[..., -1:] = False  # keep at least one token
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return scores
