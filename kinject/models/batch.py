"""Rows of answers decoded together by one model with one KV cache: the passes every answer kinject generates runs
through (``decode`` for a list of prompts at once; the server's continuous batcher admits requests into a running
``Batch`` instead).

A step admits new rows (their prompts prefilled together, left-padded, their cache merged into the batch's), picks
every row's next token with that row's own settings (``Sequence``), drops the rows that finished, and runs one
forward pass for the rest. The attention mask hides the padding and each row's position ids count only its own
tokens, so a row's tokens are what it would get alone (up to floating-point rounding of a different batch shape).
New rows that open with the same long prefix (augmentation's few-shot examples, one passage's round-trip questions)
run it once and share its keys and values.
A peft model serves a different adapter in each row (peft's ``adapter_names``), unless the batch runs the model as
it is (``as_is``: its caller switched the adapter on or off). Caches whose layers are not plain dynamic layers
(sliding windows, linear attention) cannot be merged; such a batch admits new rows only when it is empty.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

from .sequences import Params, Sequence

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
SHARED_PREFIX = 64  # fewest tokens of a prompt prefix every new row shares that are run once for all
_POSITIONS_BY_COLUMN = frozenset({"mpt"})  # models whose position bias counts cache columns (MPT's ALiBi)


class Batch:
    """Rows of ``Sequence``s decoded together by the model ``model()`` returns (looked up at each step: loading the
    first adapter wraps it). ``error_of`` turns a failure of a row into what its caller raises."""

    def __init__(
        self,
        model: Callable[[], Any],
        as_is: bool = False,
        error_of: Callable[[BaseException], BaseException] = lambda exc: exc,
    ):
        self._model, self.as_is, self._error_of = model, as_is, error_of
        self._rows: list[Sequence] = []
        self._cache: Any = None  # the rows' KV cache, attention mask, and the logits of their next token
        self._mask: Any = None
        self._pending_logits: Any = None
        self.steps = 0  # forward passes run, and the most rows one has held (the tests read them)
        self.widest = 0

    @property
    def running(self) -> int:
        """Rows in the batch now."""
        return len(self._rows)

    def _step(self, admitted: list[Sequence]) -> None:
        """Admit ``admitted`` (prefill), then pick every row's next token and run one decoding pass."""
        import torch

        model = self._model()
        last = self._pending_logits if self._rows else None
        if admitted:
            try:
                groups = self._groups(model, admitted)
                admitted = [seq for rows, _ in groups for seq in rows]
                logits = self._prefill(model, groups)
            except Exception as exc:  # noqa: BLE001 - a prompt that fails (out of memory) fails only its own rows
                for seq in admitted:
                    seq.end(self._error_of(exc))
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
                seq.end(self._error_of(exc))
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

    def _fail_all(self, exc: BaseException, others: list[Sequence] = ()) -> None:
        """A failed pass fails every row of the batch (and ``others`` not yet ended)."""
        error = self._error_of(exc)
        for seq in self._rows + [s for s in others if not s.done.is_set()]:
            seq.end(error)
        self._rows = []
        self._clear()

    def _clear(self) -> None:
        """No rows left: the batch's cache, mask and logits go."""
        self._cache, self._mask, self._pending_logits = None, None, None

    # ------------------------------------------------------------------------------------------- passes
    def _forward(self, model: Any, ids: Any, positions: Any, rows: list[Sequence], cache: Any, mask: Any) -> Any:
        kwargs: dict[str, Any] = {_cache_argument(model): cache}
        context: Any = contextlib.nullcontext()
        if _is_peft(model) and not self.as_is:
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

    def _groups(self, model: Any, admitted: list[Sequence]) -> list[tuple[list[Sequence], bool]]:
        """The new rows by the prefix they share, each group with whether it runs that prefix once: rows with the
        same ``prefix_key`` (and adapter) form such a group; the others form one group run whole, as do all the rows
        of a model that cannot share a prefix (``_shares_prefixes``)."""
        if len(admitted) < 2 or not _shares_prefixes(getattr(model, "config", None)):
            return [(admitted, False)]
        by_prefix: dict[Any, list[Sequence]] = {}
        loose = []
        for seq in admitted:
            key = prefix_key(seq.input_ids)
            if key is None:
                loose.append(seq)
            else:
                by_prefix.setdefault((None if self.as_is else seq.adapter, key), []).append(seq)
        loose += [rows[0] for rows in by_prefix.values() if len(rows) == 1]
        groups = [(rows, True) for rows in by_prefix.values() if len(rows) > 1]
        return ([(loose, False)] if loose else []) + groups

    def _prefill(self, model: Any, groups: list[tuple[list[Sequence], bool]]) -> Any:
        """Run the new rows' prompts, group by group (``_groups``), and merge their cache into the batch's; the
        logits of their next token, in the groups' order."""
        import torch

        now = time.monotonic()
        config = getattr(model, "config", None)
        cache = mask = None
        parts = []
        for rows, share in groups:
            for seq in rows:
                seq.started = now
            group_cache, group_mask, logits = self._prefill_group(model, rows, share)
            parts.append(logits)
            if cache is None:
                cache, mask = group_cache, group_mask
            else:
                cache, mask = _merged(cache, mask, group_cache, group_mask, config)
        logits = torch.cat(parts)  # before the batch takes the rows' cache: a failure here leaves it as it was
        if self._cache is None:
            self._cache, self._mask = cache, mask
        else:
            self._cache, self._mask = _merged(self._cache, self._mask, cache, mask, config)
        return logits

    def _prefill_group(self, model: Any, admitted: list[Sequence], share: bool) -> tuple[Any, Any, Any]:
        """Run ``admitted``'s prompts together (left-padded): their cache, mask and next-token logits. With ``share``
        (the rows open alike, one set of weights), the prefix every row shares (few-shot examples, one passage) is
        run once and its keys and values copied to each row, which then runs only the rest (padded after it)."""
        import torch
        from transformers import DynamicCache

        device = next(model.parameters()).device
        cache = DynamicCache(config=getattr(model, "config", None))
        shared = _common_prefix(admitted) if share else 0
        with torch.no_grad(), training_off(model):
            if shared:
                ids = torch.tensor([admitted[0].input_ids[:shared]], device=device)
                self._forward(model, ids, torch.arange(shared, device=device)[None], admitted[:1], cache, None)
                for layer in cache.layers:
                    layer.keys = layer.keys.expand(len(admitted), -1, -1, -1).contiguous()
                    layer.values = layer.values.expand(len(admitted), -1, -1, -1).contiguous()
            width = max(len(seq.input_ids) for seq in admitted) - shared
            ids = torch.zeros((len(admitted), width), dtype=torch.long, device=device)
            mask = torch.zeros((len(admitted), shared + width), dtype=torch.long, device=device)
            mask[:, :shared] = 1
            for row, seq in enumerate(admitted):
                start = width - (len(seq.input_ids) - shared)  # the row's rest, right-aligned after the prefix
                ids[row, start:] = torch.tensor(seq.input_ids[shared:], device=device)
                mask[row, shared + start :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
            logits = self._forward(model, ids, positions, admitted, cache, mask)
        return cache, mask, logits

    def _decode(self, model: Any) -> Any:
        """One pass for every row with its last token; returns the next logits."""
        import torch

        ids = torch.tensor([[seq.tokens[-1].id] for seq in self._rows], device=self._mask.device)
        self._mask = torch.cat([self._mask, torch.ones_like(ids)], dim=1)
        positions = self._mask.sum(-1, keepdim=True) - 1
        with torch.no_grad(), training_off(model):
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
        return self._cache is not None and _plain(self._cache)


def prefix_key(ids: list[int]) -> tuple[int, ...] | None:
    """What prompts that may share a prefix have in common: their first ``SHARED_PREFIX`` tokens, with at least one
    token after them (None for a shorter prompt). ``generate.batches`` keeps prompts of one key together."""
    return tuple(ids[:SHARED_PREFIX]) if len(ids) > SHARED_PREFIX else None


def _common_prefix(rows: list[Sequence]) -> int:
    """Tokens at the start of every row's prompt, one token left to each row (rows of one ``prefix_key``: at least
    ``SHARED_PREFIX``)."""
    first, shortest = rows[0].input_ids, min(len(seq.input_ids) for seq in rows)
    n = 0
    while n < shortest - 1 and all(seq.input_ids[n] == first[n] for seq in rows):
        n += 1
    return n


def _shares_prefixes(config: Any) -> bool:
    """Whether rows of this model can share a prefix's keys and values: its cache's layers are plain (a config makes
    them up front), and it places tokens by the position ids and the mask, so that padding between a shared prefix
    and a row's rest changes nothing (not MPT, whose ALiBi bias counts the cache's columns)."""
    from transformers import DynamicCache

    if config is None or getattr(config, "model_type", None) in _POSITIONS_BY_COLUMN:
        return False
    return _plain(DynamicCache(config=config))


def _plain(cache: Any) -> bool:
    """Whether every layer of ``cache`` is transformers' plain one (rows can be copied into, selected from, merged)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def decode(model: Any, tokenizer: Any, inputs: list[list[int]], params: list[Params]) -> list[Sequence]:
    """Answer every prompt of ``inputs`` with ``model`` as it is, together in one batch, each with its own settings;
    the finished ``Sequence``s in order (their tokens, text and finish reason). A failure raises."""
    batch = Batch(lambda: model, as_is=True)
    rows = [Sequence(tokenizer, ids, p) for ids, p in zip(inputs, params, strict=True)]
    batch._step(rows)
    while batch.running:
        batch._step([])
    for seq in rows:
        if seq.error is not None:
            raise seq.error
    return rows


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
def training_off(model: Any):
    """``model`` in eval mode for a pass (no dropout; peft refuses ``adapter_names`` while training), then as it
    was."""
    was = model.training
    if was:
        model.eval()
    try:
        yield
    finally:
        if was:
            model.train()
