"""The serving engine: one base model with named adapters (peft) and merged models; generation one request at a
time under a lock (the active adapter is shared model state), a bounded queue in front, and cancellation.

A request's generation stops at its stop sequences (matched on the decoded tail, so a long stop costs its length
per token, not a table over the vocabulary), at its token budget, or as soon as its ``cancel`` event is set: the
HTTP layer sets it when the client goes away, so an abandoned request frees the model within one token.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import GenerationConfig
from ..models import BUILD_LOCK, load_model, load_tokenizer, resolve_model
from ..progress import Progress
from ..runs import RunDir
from .adapters import adapter_folder
from .errors import Overloaded, ServeError

# Names of the base model in the chat route's ``model`` field: TGI's "tgi", and "dummy", which huggingface_hub's
# InferenceClient sends when it is given a server URL and no model.
BASE_ALIASES = ("tgi", "dummy")
# A model name a request may use: a run's name or a Hub id OWNER/NAME[@revision]; no path tricks.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?(@[A-Za-z0-9][A-Za-z0-9_.\-/]*)?")
MAX_NAME_CHARS = 200
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
    queued_s: float = 0.0  # waiting for the model
    generate_s: float = 0.0  # generating


def check_model_name(name: str) -> str:
    """``name`` when it can name a served model, else TGI's validation error (no ``..``, no slashes but one)."""
    if not name or len(name) > MAX_NAME_CHARS or not MODEL_NAME.fullmatch(name) or ".." in name:
        raise ServeError(
            f"{name[:80]!r} cannot name a model: use letters, digits, '_', '-', '.' (a run's name) or "
            "OWNER/NAME[@revision] (a Hub adapter), at most 200 characters and no '..'"
        )
    return name


class _Release:
    """Gives a queue slot back exactly once (a streamed response releases it when the stream ends)."""

    def __init__(self, engine: Engine):
        self._engine, self._done = engine, False

    def __call__(self) -> None:
        if not self._done:
            self._done = True
            self._engine._slot_released()


class Engine:
    """One base model with named adapters, and merged models; generation one request at a time."""

    def __init__(
        self,
        model: str,
        adapters: dict[str, str | Path] | None = None,
        merged: dict[str, str | Path] | None = None,
        revision: str | None = None,
        max_concurrent_requests: int = 16,
        max_total_tokens: int | None = None,
        progress: Progress | None = None,
    ):
        progress = progress or Progress()
        resolved = resolve_model(model, revision, progress)
        self.model_id = model
        self.tokenizer = load_tokenizer(resolved)
        self.model = load_model(resolved).eval()
        self.adapters: dict[str, Path] = {}
        self._peft_names: dict[str, str] = {}  # public name -> peft's adapter name (peft forbids '.' in names)
        self.merged: dict[str, tuple[Any, Any]] = {}
        self.created = int(time.time())
        self.max_concurrent_requests = max_concurrent_requests
        context = getattr(self.model.config, "max_position_embeddings", None) or 8192
        self.max_total_tokens = min(max_total_tokens or context, context)
        self._lock = threading.Lock()  # one generation at a time: the active adapter is shared model state
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._in_flight = 0
        self._count_lock = threading.Lock()
        for name, path in (adapters or {}).items():
            self.add_adapter(name, adapter_folder(path))
        for name, path in (merged or {}).items():
            self.add_merged(name, path)

    # ------------------------------------------------------------------------------------------------ models
    def names(self) -> list[str]:
        """Every model a request can name: the base, the adapters, the merged models."""
        return [self.model_id, *self.adapters, *self.merged]

    def add_adapter(self, name: str, folder: Path) -> None:
        """Attach the LoRA adapter in ``folder`` (see ``adapter_folder``) under ``name``."""
        from peft import PeftModel

        self.check_new_name(name)
        key = f"adapter_{len(self._peft_names)}"
        with self._lock, BUILD_LOCK:
            try:
                if self.adapters:
                    self.model.load_adapter(str(folder), adapter_name=key)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=key).eval()
            except Exception as exc:  # noqa: BLE001 - damaged weights (SafetensorError), a foreign config, a shape
                raise ServeError(f"{name}: the adapter in {folder} could not be loaded: {exc}") from None
            self.adapters[name] = folder
            self._peft_names[name] = key

    def add_merged(self, name: str, path: str | Path) -> None:
        """Load a merged model folder (``kinject merge``'s output, or any model folder) as a model of its own."""
        self.check_new_name(name)
        folder = Path(path)
        if RunDir(folder).is_run():
            folder = RunDir(folder).merged_dir
        if not (folder / "config.json").is_file():
            raise ServeError(f"{path} holds no merged model (config.json not found; run `kinject merge` first)")
        resolved = resolve_model(str(folder))
        self.merged[name] = (load_model(resolved).eval(), load_tokenizer(resolved))

    def check_new_name(self, name: str) -> None:
        """Refuse a name that cannot name a new model (malformed, the base's, or taken)."""
        check_model_name(name)
        if name in BASE_ALIASES or name == self.model_id:
            raise ServeError(f"{name!r} cannot name an adapter: it is the base model's name")
        if name in self.adapters or name in self.merged:
            raise ServeError(f"a model named {name!r} is already loaded")

    def resolve(self, name: str | None) -> str | None:
        """The adapter or merged model a request names (None: the base); an unknown name is an error."""
        if name is None or name in BASE_ALIASES or name == self.model_id:
            return None
        if name in self.adapters or name in self.merged:
            return name
        raise ServeError(f"model or adapter {name[:80]!r} is not loaded; loaded: {', '.join(self.names())}")

    # ----------------------------------------------------------------------------------------------- requests
    def slot(self) -> _Release:
        """A place in the request queue, or ``Overloaded`` at once when all are taken."""
        if not self._slots.acquire(blocking=False):
            raise Overloaded()
        with self._count_lock:
            self._in_flight += 1
        return _Release(self)

    def _slot_released(self) -> None:
        with self._count_lock:
            self._in_flight -= 1
        self._slots.release()

    @property
    def in_flight(self) -> int:
        """Requests queued or generating now (``/metrics``' queue size)."""
        return self._in_flight

    def tokenizer_for(self, target: str | None) -> Any:
        return self.merged[target][1] if target in self.merged else self.tokenizer

    def encode(self, target: str | None, text: str) -> list[int]:
        return self.tokenizer_for(target)(text, add_special_tokens=True)["input_ids"]

    def chat_ids(self, target: str | None, messages: list[dict[str, str]]) -> list[int]:
        from ..generate import chat_prompt_ids

        tokenizer = self.tokenizer_for(target)
        if not getattr(tokenizer, "chat_template", None):
            raise ServeError("this model has no chat template: use /generate", 422, "template_error")
        try:
            return chat_prompt_ids(tokenizer, messages)
        except Exception as exc:  # noqa: BLE001 - a template that rejects the conversation (roles, order)
            raise ServeError(f"the chat template refused the messages: {exc}", 422, "template_error") from None

    def chat_text(self, target: str | None, messages: list[dict[str, str]]) -> str:
        """The conversation as the chat template writes it, ending in the assistant's turn."""
        tokenizer = self.tokenizer_for(target)
        if not getattr(tokenizer, "chat_template", None):
            raise ServeError("this model has no chat template", 404, "template_error")
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # noqa: BLE001
            raise ServeError(f"the chat template refused the messages: {exc}", 404, "template_error") from None

    def tokenize(self, target: str | None, text: str) -> list[dict[str, Any]]:
        """TGI's ``/tokenize`` answer: each token's id, text and character span in ``text``."""
        tokenizer = self.tokenizer_for(target)
        if not getattr(tokenizer, "is_fast", False):
            raise ServeError("No fast tokenizer available", 404, "tokenizer")
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        return [
            {"id": i, "text": text[a:b], "start": a, "stop": b}
            for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        ]

    def check_length(self, input_ids: list[int], params: Params) -> None:
        if not input_ids:
            raise ServeError("`inputs` cannot be empty")
        total = len(input_ids) + params.max_new_tokens
        if total > self.max_total_tokens:
            raise ServeError(
                f"`inputs` tokens + `max_new_tokens` must be <= {self.max_total_tokens}. Given: {len(input_ids)} "
                f"`inputs` tokens and {params.max_new_tokens} `max_new_tokens`"
            )

    def generate(
        self,
        target: str | None,
        input_ids: list[int],
        params: Params,
        on_token: Any = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        """Generate for ``target`` (None: the base). ``on_token(TokenOut)`` is called as each token is made; a set
        ``cancel`` ends the generation after the current token (or before it starts, while it waits)."""
        import torch

        tokenizer = self.tokenizer_for(target)
        cancel = cancel or threading.Event()
        special = set(tokenizer.all_special_ids)
        kw = self._decoding(tokenizer, params)
        stops = _StopCriteria(tokenizer, params.stop, len(input_ids), cancel)
        seed = (
            params.seed if params.seed is not None else (int(time.time() * 1000) % 2**31 if params.sampling else None)
        )
        queued = time.monotonic()
        try:
            with self._lock:
                started = time.monotonic()
                if cancel.is_set():
                    return Generation([], "", "cancelled", len(input_ids), seed, started - queued)
                model, context = self._model_for(target)
                ids = torch.tensor([input_ids], device=next(model.parameters()).device)
                if seed is not None:
                    torch.manual_seed(seed)
                with context, torch.no_grad():
                    out = model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        streamer=_Streamer(tokenizer, special, on_token),
                        stopping_criteria=[stops],
                        **kw,
                    )
        except ServeError:
            raise
        except Exception as exc:  # noqa: BLE001 - TGI's "generation" error, with what went wrong
            raise ServeError(
                f"Request failed during generation: {type(exc).__name__}: {exc}", 424, "generation"
            ) from exc
        new = out.sequences[0, len(input_ids) :].tolist()
        logprobs = [
            float(torch.log_softmax(score[0].float(), dim=-1)[token])
            for score, token in zip(out.scores, new, strict=False)
        ]
        tokens = [
            TokenOut(t, "" if t in special else tokenizer.decode([t]), lp, t in special)
            for t, lp in zip(new, logprobs, strict=False)
        ]
        eos = tokenizer.eos_token_id
        if eos in new:
            text_ids, finish = new[: new.index(eos)], "eos_token"
        else:
            text_ids, finish = new, "length"
        if stops.matched:
            finish = "stop_sequence"
        elif cancel.is_set() and finish == "length" and len(new) < params.max_new_tokens:
            finish = "cancelled"
        text = tokenizer.decode(text_ids, skip_special_tokens=True)
        return Generation(tokens, text, finish, len(input_ids), seed, started - queued, time.monotonic() - started)

    @staticmethod
    def _decoding(tokenizer: Any, params: Params) -> dict[str, Any]:
        eos = tokenizer.eos_token_id
        kw: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
            "eos_token_id": eos,
            "repetition_penalty": max(params.repetition_penalty or 1.0, MIN_REPETITION_PENALTY),
            "output_scores": True,
            "return_dict_in_generate": True,
        }
        if params.sampling:
            kw.update(
                do_sample=True, temperature=params.temperature or 1.0, top_p=params.top_p, top_k=params.top_k or 0
            )
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def _model_for(self, target: str | None) -> tuple[Any, Any]:
        """(model, context manager) that answers as ``target``; call under the lock."""
        if target in self.merged:
            return self.merged[target][0], contextlib.nullcontext()
        if target is None:
            if self.adapters:
                return self.model, self.model.disable_adapter()
            return self.model, contextlib.nullcontext()
        self.model.set_adapter(self._peft_names[target])
        return self.model, contextlib.nullcontext()


class _Streamer:
    """Hands each new token to ``on_token`` (transformers calls ``put`` with the prompt first, then each token)."""

    def __init__(self, tokenizer: Any, special: set[int], on_token: Any):
        self.tokenizer, self.special, self.on_token, self.first = tokenizer, special, on_token, True

    def put(self, value: Any) -> None:
        if self.first:
            self.first = False
            return
        if self.on_token is None:
            return
        for token in value.reshape(-1).tolist():
            text = "" if token in self.special else self.tokenizer.decode([token])
            self.on_token(TokenOut(token, text, None, token in self.special))

    def end(self) -> None:
        pass


class _StopCriteria:
    """Stops at a stop sequence or when cancelled. Only the decoded tail that could hold the longest stop is
    looked at, so each token costs the stop's length (transformers' ``stop_strings`` precomputes a table over the
    whole vocabulary per stop, which a long stop turns into minutes)."""

    def __init__(self, tokenizer: Any, stops: list[str], prompt_len: int, cancel: threading.Event):
        self.tokenizer, self.stops, self.prompt_len, self.cancel = tokenizer, stops, prompt_len, cancel
        self.tail_tokens = max((len(s) for s in stops), default=0) + 2  # a token is at least one character
        self.matched: str | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = self.cancel.is_set()
        if not done and self.stops:
            tail = input_ids[0, max(self.prompt_len, input_ids.shape[1] - self.tail_tokens) :].tolist()
            text = self.tokenizer.decode(tail, skip_special_tokens=True)
            self.matched = next((s for s in self.stops if text.endswith(s)), None)
            done = self.matched is not None
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)
