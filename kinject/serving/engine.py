"""The serving engine: one base model with named adapters (peft) and merged models, each model's requests generated
together by a continuous batcher (``batcher.py``), a bounded queue in front, and cancellation.

A request's generation stops at its stop sequences, at its token budget, at the end of its turn, or as soon as its
``cancel`` event is set: the HTTP layer sets it when the client goes away, so an abandoned request leaves the batch
within one step (``kinject.models.sequences`` has one answer's decoding).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from pathlib import Path
from typing import Any

from ..models.loading import BUILD_LOCK, load_model, load_tokenizer, resolve_model
from ..models.sequences import Generation, Params, Sequence, TokenOut
from ..runs import RunDir
from ..runtime.progress import Progress
from .adapters import adapter_folder
from .batcher import Batcher
from .errors import Overloaded, ServeError

__all__ = ["Engine", "Generation", "Params", "TokenOut", "check_model_name", "BASE_ALIASES"]

# Names of the base model in the chat route's ``model`` field: TGI's "tgi", and "dummy", which huggingface_hub's
# InferenceClient sends when it is given a server URL and no model.
BASE_ALIASES = ("tgi", "dummy")
# A model name a request may use: a run's name or a Hub id OWNER/NAME[@revision]; no path tricks.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?(@[A-Za-z0-9][A-Za-z0-9_.\-/]*)?")
MAX_NAME_CHARS = 200
DEFAULT_MAX_BATCH_SIZE = 8
# The most tokens a /tokenize answer lists when the model's context is shorter: about 2 MB of JSON, as large as the
# largest request body the server reads by default.
TOKENIZE_TOKENS = 32_768


def check_model_name(name: str) -> str:
    """``name`` when it can name a served model, else TGI's validation error (no ``..``, no slashes but one)."""
    if not name or len(name) > MAX_NAME_CHARS or not MODEL_NAME.fullmatch(name) or ".." in name:
        raise ServeError(
            f"{name[:80]!r} cannot name a model: use letters, digits, '_', '-', '.' (a run's name) or "
            "OWNER/NAME[@revision] (a Hub adapter), at most 200 characters and no '..'"
        )
    return name


def longest_token_chars(tokenizer: Any) -> int:
    """Characters in the tokenizer's longest token as its vocabulary spells it, the most text one token can cover (a
    byte-level BPE spells one character per byte, so never fewer characters than the text the token stands for)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1)


class _Release:
    """Gives a queue slot back exactly once (a streamed response releases it when the stream ends)."""

    def __init__(self, engine: Engine):
        self._engine, self._done = engine, False

    def __call__(self) -> None:
        if not self._done:
            self._done = True
            self._engine._slot_released()


class Engine:
    """One base model with named adapters, and merged models; each model's requests generate together in batches
    of at most ``max_batch_size``, up to ``max_concurrent_requests`` queued or running."""

    def __init__(
        self,
        model: str,
        adapters: dict[str, str | Path] | None = None,
        merged: dict[str, str | Path] | None = None,
        revision: str | None = None,
        max_concurrent_requests: int = 16,
        max_total_tokens: int | None = None,
        progress: Progress | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        progress = progress or Progress()
        resolved = resolve_model(model, revision, progress)
        self.model_id = model
        self.tokenizer = load_tokenizer(resolved)
        self.model = load_model(resolved).eval()
        self.adapters: dict[str, Path] = {}
        self._peft_names: dict[str, str] = {}  # public name -> peft's adapter name (peft forbids '.' in names)
        self.merged: dict[str, tuple[Any, Any]] = {}
        self._token_chars: dict[str | None, int] = {None: longest_token_chars(self.tokenizer)}  # None: the base's
        self.created = int(time.time())
        self.max_concurrent_requests = max_concurrent_requests
        context = getattr(self.model.config, "max_position_embeddings", None) or 8192
        self.max_total_tokens = min(max_total_tokens or context, context)
        self.max_batch_size = max_batch_size
        self._lock = threading.Lock()  # one forward pass at a time, and adapters load between passes
        # One model loads at a time, its name checked and its peft key chosen under this lock: two loads at once
        # must neither share a key (one adapter's weights would answer for both) nor both take one name.
        self._load_lock = threading.Lock()
        self._adapter_keys = itertools.count()  # never reused, even after a load that failed half way
        self._batcher = Batcher(lambda: self.model, self._lock, max_batch_size)
        self._merged_batchers: dict[str, Batcher] = {}
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

        with self._load_lock:
            self.check_new_name(name)
            key = f"adapter_{next(self._adapter_keys)}"
            with self._lock, BUILD_LOCK:
                try:
                    if self.adapters:
                        self.model.load_adapter(str(folder), adapter_name=key)
                    else:
                        self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=key).eval()
                except Exception as exc:  # noqa: BLE001 - damaged weights (SafetensorError), a foreign config, a shape
                    raise ServeError(f"{name}: the adapter in {folder} could not be loaded: {exc}") from None
                self._peft_names[name] = key
                self.adapters[name] = folder  # last: a request may name it from now on

    def add_merged(self, name: str, path: str | Path) -> None:
        """Load a merged model folder (``kinject merge``'s output, or any model folder) as a model of its own."""
        with self._load_lock:
            self.check_new_name(name)
            folder = Path(path)
            if RunDir(folder).is_run():
                folder = RunDir(folder).merged_dir
            if not (folder / "config.json").is_file():
                raise ServeError(f"{path} holds no merged model (config.json not found; run `kinject merge` first)")
            resolved = resolve_model(str(folder))
            model, tokenizer = load_model(resolved).eval(), load_tokenizer(resolved)
            self._merged_batchers[name] = Batcher(lambda: model, self._lock, self.max_batch_size, f"-{name}")
            self._token_chars[name] = longest_token_chars(tokenizer)
            self.merged[name] = (model, tokenizer)  # last: a request may name it from now on

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

    # ------------------------------------------------------------------------------------------- input limits
    @property
    def max_input_tokens(self) -> int:
        """The most prompt tokens a request can send (one is left to generate), as ``/info`` reports it."""
        return self.max_total_tokens - 1

    def max_input_chars(self, target: str | None) -> int:
        """The most characters of text that can fit in ``max_input_tokens`` tokens of ``target``'s tokenizer."""
        return self.max_input_tokens * self._token_chars[target if target in self.merged else None]

    def check_chars(self, target: str | None, chars: int, what: str) -> None:
        """Refuse, before it is tokenized, text longer than any the model can read (``max_input_chars``)."""
        limit = self.max_input_chars(target)
        if chars > limit:
            raise ServeError(
                f"{what} has {chars} characters: at most {limit} fit in this model's {self.max_input_tokens} "
                "input tokens"
            )

    def check_messages(self, target: str | None, messages: list[dict[str, str]]) -> None:
        """Refuse, before the chat template runs, a conversation the model cannot read: more messages than input
        tokens (each message takes at least one), or more characters than those tokens can hold."""
        if len(messages) > self.max_input_tokens:
            raise ServeError(
                f"`messages` holds {len(messages)} messages: at most {self.max_input_tokens} fit in this model's "
                f"{self.max_input_tokens} input tokens"
            )
        self.check_chars(target, sum(len(m["role"]) + len(m["content"]) for m in messages), "`messages`")

    # ------------------------------------------------------------------------------------------- tokenizing
    def encode(self, target: str | None, text: str) -> list[int]:
        self.check_chars(target, len(text), "`inputs`")
        return self.tokenizer_for(target)(text, add_special_tokens=True)["input_ids"]

    def chat_ids(self, target: str | None, messages: list[dict[str, str]]) -> list[int]:
        from ..models.generate import chat_prompt_ids

        tokenizer = self.tokenizer_for(target)
        if not getattr(tokenizer, "chat_template", None):
            raise ServeError("this model has no chat template: use /generate", 422, "template_error")
        self.check_messages(target, messages)
        try:
            return chat_prompt_ids(tokenizer, messages)
        except Exception as exc:  # noqa: BLE001 - a template that rejects the conversation (roles, order)
            raise ServeError(f"the chat template refused the messages: {exc}", 422, "template_error") from None

    def chat_text(self, target: str | None, messages: list[dict[str, str]]) -> str:
        """The conversation as the chat template writes it, ending in the assistant's turn."""
        tokenizer = self.tokenizer_for(target)
        if not getattr(tokenizer, "chat_template", None):
            raise ServeError("this model has no chat template", 404, "template_error")
        self.check_messages(target, messages)
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # noqa: BLE001
            raise ServeError(f"the chat template refused the messages: {exc}", 404, "template_error") from None

    def tokenize(self, target: str | None, text: str, what: str = "`inputs`") -> list[dict[str, Any]]:
        """TGI's ``/tokenize`` answer: each token's id, text and character span in ``text``. A text longer than the
        model reads is refused before it is tokenized, and the answer lists at most the model's context or
        ``TOKENIZE_TOKENS`` tokens, whichever is more."""
        tokenizer = self.tokenizer_for(target)
        if not getattr(tokenizer, "is_fast", False):
            raise ServeError("No fast tokenizer available", 404, "tokenizer")
        self.check_chars(target, len(text), what)
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        limit = max(self.max_total_tokens, TOKENIZE_TOKENS)
        if len(enc["input_ids"]) > limit:
            raise ServeError(f"{what} is {len(enc['input_ids'])} tokens: /tokenize lists at most {limit}")
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
        """Generate for ``target`` (None: the base) in the batch of its model, beside the other requests running
        now. ``on_token(TokenOut)`` is called as each token is made; a set ``cancel`` ends the generation after the
        current token (or before it starts, while it waits)."""
        batcher = self._merged_batchers[target] if target in self.merged else self._batcher
        adapter = self._peft_names.get(target) if target is not None else None
        seq = Sequence(self.tokenizer_for(target), input_ids, params, adapter, on_token, cancel)
        batcher.submit(seq).done.wait()
        if seq.error is not None:
            raise seq.error
        assert seq.result is not None
        return seq.result

    @property
    def running(self) -> int:
        """Requests generating in a batch now (the others in flight wait for a place)."""
        return self._batcher.running + sum(b.running for b in self._merged_batchers.values())
