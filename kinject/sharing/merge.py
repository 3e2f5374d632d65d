"""Merge a run's adapter into a 16-bit copy of its base model (``merged/``), e.g. for TGI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.loading import BUILD_LOCK, load_model, load_tokenizer, resolve_model
from ..runs import RunDir
from ..runtime.progress import Progress
from ..settings.fields import from_dict
from ..settings.stages import ModelConfig


def merge(run_dir: str | Path | RunDir, progress: Progress | None = None, max_shard_size: str = "2GB") -> Path:
    """Write ``run_dir/merged`` atomically: base + adapter (``merge_and_unload``) as safetensors shards.

    The base is loaded in 16 bits even when the adapter was trained on a 4-bit base: merging into quantized
    weights would round the adapter's update away. ``progress.should_stop()`` is checked between the steps and
    raises ``InterruptedError`` (nothing written). It holds the run's training lock, and records the sha256 of the
    adapter's weights in ``merged/`` (see ``RunDir.merged_is_current``).
    """
    run = RunDir(run_dir)
    adapter = run.require_adapter()
    with run.training_lock():  # a training must not replace the adapter while it is merged
        return _merge(run, adapter, progress or Progress(), max_shard_size)


def _merge(run: RunDir, adapter: Path, progress: Progress, max_shard_size: str) -> Path:
    import torch

    # Which adapter this is, recorded in merged/ so that a push tells a merged model of an older adapter.
    record = {"adapter_sha256": run.adapter_digest(), "adapter_step": run.read_adapter_meta().get("step")}
    progress.start("merge", total=3, unit="step")
    dtype = torch.bfloat16 if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else torch.float16
    merged, tokenizer = load_merged(run, adapter, dtype, progress)

    def save(folder: Path) -> None:
        merged.save_pretrained(str(folder), safe_serialization=True, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(str(folder))

    target = run.write_merged(save, record)
    progress.advance(1)
    progress.finish()
    return target


def load_merged(run: RunDir, adapter: Path, dtype: Any, progress: Progress) -> tuple[Any, Any]:
    """The run's base with ``adapter`` folded in (``merge_and_unload``) on the CPU in ``dtype``, and its tokenizer;
    advances ``progress`` by two steps and raises ``InterruptedError`` when it asks to stop (``merge`` and
    ``export`` share it, so both fold the adapter in the same way)."""
    base, tokenizer = load_base(run, dtype, progress)
    return fold_adapter(base, adapter, progress), tokenizer


def load_base(run: RunDir, dtype: Any, progress: Progress) -> tuple[Any, Any]:
    """The run's base model on the CPU in ``dtype`` and its tokenizer; advances ``progress`` by one step."""
    cfg = from_dict(ModelConfig, run.section("model"), "model")
    resolved = resolve_model(cfg.model, cfg.revision, progress)
    base = load_model(resolved, quantization="none", dtype=dtype, device_map="cpu")
    progress.advance(1)
    _check_stop(progress)
    return base, load_tokenizer(resolved)


def fold_adapter(base: Any, adapter: Path, progress: Progress) -> Any:
    """``base`` with ``adapter`` folded into its weights (in place: ``base`` is the merged model after this);
    advances ``progress`` by one step."""
    from peft import PeftModel

    with BUILD_LOCK:
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    progress.advance(1)
    _check_stop(progress)
    return merged


def _check_stop(progress: Progress) -> None:
    if progress.should_stop():
        raise InterruptedError("stopped before the merged model was written; nothing was written")
