"""Merge a run's adapter into a 16-bit copy of its base model (``merged/``), e.g. for TGI."""

from __future__ import annotations

from pathlib import Path

from . import runs
from .config import ModelConfig, from_dict
from .models import ModelError, load_model, load_tokenizer, resolve_model
from .progress import Progress


def merge(run_dir: str | Path, progress: Progress | None = None, max_shard_size: str = "2GB") -> Path:
    """Write ``run_dir/merged`` atomically: base + adapter (``merge_and_unload``) as safetensors shards.

    The base is loaded in 16 bits even when the adapter was trained on a 4-bit base: merging into quantized
    weights would round the adapter's update away.
    """
    import torch
    from peft import PeftModel

    run_dir = Path(run_dir)
    progress = progress or Progress()
    adapter = run_dir / runs.ADAPTER
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(f"{run_dir} has no adapter to merge: train first")
    cfg = from_dict(ModelConfig, runs.read_config(run_dir).get("model"))
    progress.start("merge", total=3, unit="step")
    resolved = resolve_model(cfg.model, cfg.revision, progress)
    dtype = torch.bfloat16 if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else torch.float16
    base = load_model(resolved, quantization="none", dtype=dtype, device_map="cpu")
    progress.advance(1)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    progress.advance(1)
    target = run_dir / runs.MERGED
    with runs.replaced_dir(target) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True, max_shard_size=max_shard_size)
        load_tokenizer(resolved).save_pretrained(str(tmp))
    progress.advance(1)
    progress.finish()
    return target
