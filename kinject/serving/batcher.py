"""Continuous batching for one model: requests join a running batch at the next decoding step and leave it as
soon as they finish, so concurrent requests generate together instead of one after another (what TGI's router and
vLLM's scheduler do, here with transformers' dynamic KV cache instead of paged attention).

One thread per model runs the loop: admit waiting requests (their prompts prefilled together, left-padded), merge
their KV cache into the batch's, pick every row's next token with that row's own settings, drop the rows that
finished, and run one forward pass for the rest. Rows are left-padded to a common length; the attention mask hides
the padding and each row's position ids count only its own tokens, so a row's tokens are what it would get alone
(up to floating-point rounding of a different batch shape). A peft model serves a different adapter in each row
(peft's ``adapter_names``). Every forward pass holds the shared ``compute`` lock, so batches of different models
take turns and an adapter is loaded between steps.

Caches whose layers are not plain dynamic layers (sliding windows, linear attention) cannot be merged; such a model
admits new requests only when its batch is empty (static batching).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .errors import ServeError
from .sequences import Sequence

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
EXIT_JOIN_S = 10.0  # how long the interpreter's exit waits for a batcher to leave its forward pass
_LIVE: weakref.WeakSet[Batcher] = weakref.WeakSet()
_EXITING = threading.Event()  # set at exit: a request submitted after it ends at once, and no loop starts again


@atexit.register
def _stop_all() -> None:
    """Stop every batcher's thread before the interpreter finalizes. A daemon thread still inside a forward pass
    (the GIL released in torch's C++ code) when finalization starts is killed there, and the process aborts
    ("terminate called without an active exception"): one `kinject ask` in six did, after printing its answer."""
    _EXITING.set()
    for batcher in list(_LIVE):
        batcher.stop(EXIT_JOIN_S)


class Batcher:
    """Runs the requests of one model in batches of at most ``max_batch_size`` rows."""

    def __init__(self, model: Callable[[], Any], compute: threading.Lock, max_batch_size: int = 8, name: str = ""):
        self._model = model  # the model is looked up at each step: loading the first adapter wraps it
        self.compute = compute
        self.max_batch_size = max_batch_size
        self.name = name
        self._waiting: list[Sequence] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._rows: list[Sequence] = []
        self._cache: Any = None  # the rows' KV cache, attention mask, and the logits of their next token
        self._mask: Any = None
        self._pending_logits: Any = None
        self.steps = 0  # forward passes run, and the most rows one has held (the tests read them)
        self.widest = 0
        self._stopping = False
        _LIVE.add(self)

    # ------------------------------------------------------------------------------------------- requests
    def submit(self, seq: Sequence) -> Sequence:
        """Queue ``seq`` for the next step; returns at once (wait on ``seq.done``)."""
        with self._wake:
            if _EXITING.is_set():
                seq.cancel.set()
                seq.end()
                return seq
            self._waiting.append(seq)
            if self._thread is None or not self._thread.is_alive():  # None: cleared by a loop that stopped
                self._stopping = False
                self._thread = threading.Thread(target=self._loop, name=f"kinject-batcher{self.name}", daemon=True)
                self._thread.start()
            self._wake.notify()
        return seq

    def stop(self, timeout: float | None = None) -> None:
        """End the loop after its current step (requests still running or waiting end as cancelled) and wait for
        its thread, at most ``timeout`` seconds."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> int:
        """Rows in the batch now."""
        return len(self._rows)

    # ------------------------------------------------------------------------------------------- the loop
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._rows and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    self._end_all()
                    self._thread = None
                    return
                admitted = self._admissible()
            try:
                with self.compute:
                    self._step(admitted)
            except Exception as exc:  # noqa: BLE001 - a failed pass fails its batch, never the thread
                error = _generation_error(exc)
                for seq in self._rows + [s for s in admitted if not s.done.is_set()]:
                    seq.end(error)
                self._rows = []
                self._clear()

    def _end_all(self) -> None:
        """Stopping: every running and waiting request ends as cancelled (call holding ``_wake``)."""
        for seq in self._rows + self._waiting:
            seq.cancel.set()
            seq.end()
        self._rows, self._waiting = [], []
        self._clear()

    def _admissible(self) -> list[Sequence]:
        """The waiting requests that join this step (call holding ``_wake``); cancelled ones end here."""
        for seq in [s for s in self._waiting if s.cancel.is_set()]:
            self._waiting.remove(seq)
            seq.end()
        room = self.max_batch_size - len(self._rows)
        if room <= 0 or (self._rows and not self._mergeable()):
            return []
        admitted, self._waiting = self._waiting[:room], self._waiting[room:]
        return admitted

    def _step(self, admitted: list[Sequence]) -> None:
        """Admit ``admitted`` (prefill), then pick every row's next token and run one decoding pass."""
        import torch

        model = self._model()
        last = self._pending_logits if self._rows else None
        if admitted:
            try:
                logits = self._prefill(model, admitted)
            except Exception as exc:  # noqa: BLE001 - a prompt that fails (out of memory) fails only its own rows
                for seq in admitted:
                    seq.end(_generation_error(exc))
                admitted, logits = [], None
            if logits is not None:
                last = logits if last is None else torch.cat([last, logits])
                self._rows = self._rows + admitted
        if not self._rows:
            return
        for row, seq in enumerate(self._rows):
            if seq.cancel.is_set():
                seq.finish = "cancelled"
                continue
            try:
                seq.next_token(last[row])
            except Exception as exc:  # noqa: BLE001 - one row's bad settings or a callback fail that row only
                seq.end(_generation_error(exc))
        keep = [i for i, seq in enumerate(self._rows) if seq.finish is None and not seq.done.is_set()]
        for seq in self._rows:
            if seq.finish is not None:
                seq.end()
        if len(keep) < len(self._rows):
            self._select(keep)
        if not self._rows:
            self._clear()
            return
        self._pending_logits = self._decode(model)

    def _clear(self) -> None:
        """No rows left: the batch's cache, mask and logits go."""
        self._cache, self._mask, self._pending_logits = None, None, None

    # ------------------------------------------------------------------------------------------- passes
    def _forward(self, model: Any, ids: Any, positions: Any, rows: list[Sequence], cache: Any, mask: Any) -> Any:
        kwargs: dict[str, Any] = {_cache_argument(model): cache}
        context: Any = contextlib.nullcontext()
        if _is_peft(model):
            names = {seq.adapter for seq in rows}
            if len(names) > 1:  # rows of different adapters: peft runs each row through its own
                kwargs["adapter_names"] = [seq.adapter or BASE_ADAPTER for seq in rows]
            elif None in names:
                context = model.disable_adapter()
            else:  # one adapter for every row: peft's plain path (no per-adapter split of the batch)
                model.set_adapter(names.pop())
        with context:
            out = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs
            )
        self.steps += 1
        self.widest = max(self.widest, ids.shape[0])
        return out.logits[:, -1, :]

    def _prefill(self, model: Any, admitted: list[Sequence]) -> Any:
        """Run the new rows' prompts together (left-padded) and merge their cache into the batch's."""
        import torch
        from transformers import DynamicCache

        device = next(model.parameters()).device
        width = max(len(seq.input_ids) for seq in admitted)
        ids = torch.zeros((len(admitted), width), dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        now = time.monotonic()
        for row, seq in enumerate(admitted):
            ids[row, width - len(seq.input_ids) :] = torch.tensor(seq.input_ids, device=device)
            mask[row, width - len(seq.input_ids) :] = 1
            seq.started = now
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=getattr(model, "config", None))
        with torch.no_grad(), _training_off(model):
            logits = self._forward(model, ids, positions, admitted, cache, mask)
        if self._cache is None:
            self._cache, self._mask = cache, mask
        else:
            self._cache, self._mask = _merged(self._cache, self._mask, cache, mask, getattr(model, "config", None))
        return logits

    def _decode(self, model: Any) -> Any:
        """One pass for every row with its last token; returns the next logits."""
        import torch

        ids = torch.tensor([[seq.tokens[-1].id] for seq in self._rows], device=self._mask.device)
        self._mask = torch.cat([self._mask, torch.ones_like(ids)], dim=1)
        positions = self._mask.sum(-1, keepdim=True) - 1
        with torch.no_grad(), _training_off(model):
            return self._forward(model, ids, positions, self._rows, self._cache, self._mask)

    def _select(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` and drop the padding columns every remaining row has."""
        import torch

        self._rows = [self._rows[i] for i in keep]
        if not keep:
            return
        index = torch.tensor(keep, device=self._mask.device)
        self._mask = self._mask.index_select(0, index)
        self._pending_logits = None
        if not self._mergeable():  # sliding-window or linear-attention layers: the cache selects its own rows
            self._cache.batch_select_indices(index)
            return
        lead = int((self._mask.cumsum(-1) == 0).sum(-1).min())  # padding columns common to every row
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[..., lead:, :]
            layer.values = layer.values.index_select(0, index)[..., lead:, :]
        self._mask = self._mask[:, lead:]

    def _mergeable(self) -> bool:
        from transformers.cache_utils import DynamicLayer

        return self._cache is not None and all(type(layer) is DynamicLayer for layer in self._cache.layers)


def _generation_error(exc: BaseException) -> ServeError:
    """TGI's "generation" error (424), with what went wrong."""
    return ServeError(f"Request failed during generation: {type(exc).__name__}: {exc}", 424, "generation")


def _merged(cache: Any, mask: Any, new_cache: Any, new_mask: Any, config: Any) -> tuple[Any, Any]:
    """Two batches' caches and masks as one, each left-padded to the longer of the two."""
    import torch
    from transformers import DynamicCache

    width = max(mask.shape[1], new_mask.shape[1])

    def pad(t: Any, to: int) -> Any:
        missing = to - t.shape[-2]
        if not missing:
            return t
        return torch.cat([t.new_zeros((*t.shape[:-2], missing, t.shape[-1])), t], dim=-2)

    layers = [
        (torch.cat([pad(a.keys, width), pad(b.keys, width)]), torch.cat([pad(a.values, width), pad(b.values, width)]))
        for a, b in zip(cache.layers, new_cache.layers, strict=True)
    ]

    def pad_mask(m: Any) -> Any:
        return torch.cat([m.new_zeros((m.shape[0], width - m.shape[1])), m], dim=1)

    return DynamicCache(ddp_cache_data=layers, config=config), torch.cat([pad_mask(mask), pad_mask(new_mask)])


def _cache_argument(model: Any) -> str:
    """The name the model's forward takes its KV cache by (transformers 5.24 renamed ``past_key_values`` to
    ``cache`` in some models, and warns for the old name)."""
    return _cache_argument_of(type(model.get_base_model() if _is_peft(model) else model))


@functools.lru_cache(maxsize=32)
def _cache_argument_of(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


@contextlib.contextmanager
def _training_off(model: Any):
    """Generation always runs the model in eval mode (peft refuses ``adapter_names`` while training)."""
    was = model.training
    if was:
        model.eval()
    try:
        yield
    finally:
        if was:
            model.train()
