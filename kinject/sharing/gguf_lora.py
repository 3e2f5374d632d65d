"""A run's LoRA adapter alone as a GGUF LoRA file, for llama.cpp's ``--lora`` and Ollama's ``ADAPTER`` over the base
model's GGUF, written the way llama.cpp's ``convert_lora_to_gguf.py`` writes it: ``general.type`` "adapter",
``adapter.type`` "lora", ``adapter.lora.alpha``, and for every adapted matrix of the base two F32 tensors named
after the base tensor's GGUF name, ``blk.0.attn_q.weight.lora_a`` (peft's ``lora_A``, ``[r, in]``) and ``.lora_b``
(``lora_B``, ``[out, r]``), B's rows of a Llama's q and k permuted as the base's rows are.

llama.cpp scales the product by alpha / r (r read from the tensors), peft by the same, or by alpha / sqrt(r) with
rsLoRA (then the file's alpha is alpha * sqrt(r)). What llama.cpp cannot apply as peft does (DoRA, LoRA biases,
per-module alphas, an adapted embedding, extra trained modules) is refused by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..runs import RunDir
from .gguf_tensors import ExportError, architecture, gguf_name, permute, qk_heads

ADAPTER_WEIGHTS, ADAPTER_CONFIG = RunDir.ADAPTER_WEIGHTS, RunDir.ADAPTER_CONFIG  # peft's names in a saved adapter
_PREFIX = "base_model.model."
_NOT_FOR_LLAMA_CPP = "llama.cpp cannot apply it as peft does; export the merged model instead (--what merged)"


def lora_alpha(adapter_config: dict[str, Any]) -> float:
    """The alpha llama.cpp is given so that its alpha / r is peft's scale; what it cannot scale so is refused."""
    if adapter_config.get("peft_type", "LORA") != "LORA":
        kind = adapter_config.get("peft_type")
        raise ExportError(f"the adapter is a {kind} adapter, not LoRA: {_NOT_FOR_LLAMA_CPP}")
    for key, what in (("use_dora", "DoRA"), ("lora_bias", "LoRA biases"), ("alpha_pattern", "per-module alphas")):
        if adapter_config.get(key):
            raise ExportError(f"the adapter uses {what} ({key}): {_NOT_FOR_LLAMA_CPP}")
    alpha = float(adapter_config["lora_alpha"])
    if adapter_config.get("use_rslora"):
        if adapter_config.get("rank_pattern"):
            raise ExportError(f"the adapter uses rsLoRA with per-module ranks: {_NOT_FOR_LLAMA_CPP}")
        alpha *= math.sqrt(int(adapter_config["r"]))
    return alpha


def lora_pairs(weights: dict[str, Any], config: Any, arch: str | None = None) -> Iterator[tuple[str, Any, Any]]:
    """Each adapted matrix of peft's ``weights`` as (base tensor's GGUF name, A, B) in float32 numpy, B permuted where
    the base's rows are; ``config``: the base model's config (``arch``: its class when the config names none)."""
    import torch

    found = architecture(config, arch)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in weights.items():
        stem = name.removeprefix(_PREFIX)
        for part in ("A", "B"):
            if stem.endswith(f".lora_{part}.weight"):
                pairs.setdefault(stem.removesuffix(f".lora_{part}.weight") + ".weight", {})[part] = tensor
                break
        else:
            what = "an adapted embedding" if "lora_embedding" in name else "a tensor that is not a LoRA matrix"
            raise ExportError(f"the adapter holds {name} ({what}): {_NOT_FOR_LLAMA_CPP}")
    for base, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise ExportError(f"the adapter holds lora_{''.join(pair)} of {base} without its other half")
        if tied and base == "lm_head.weight":
            raise ExportError(f"the adapter adapts the output matrix, the tied embedding: {_NOT_FOR_LLAMA_CPP}")
        a, b = (pair[p].detach().to("cpu", torch.float32) for p in ("A", "B"))
        heads = qk_heads(found, config, base)
        if heads is not None:
            b = permute(b, *heads)
        yield gguf_name(base), a.numpy(), b.numpy()


def read_adapter(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """peft's saved adapter: (its adapter_config.json, its weights by name)."""
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return config, load_file(str(adapter_dir / ADAPTER_WEIGHTS), device="cpu")


def lora_bytes(adapter_dir: Path) -> int:
    """About how many bytes the adapter's GGUF file takes (its weights in F32, and a little metadata)."""
    from safetensors import safe_open

    with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as f:
        count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 - safe_open has no iter
    return 4 * count + (1 << 16)


def write_lora_gguf(path: Path, adapter_dir: Path, config: Any, name: str, arch: str | None = None) -> Path:
    """Write the peft adapter in ``adapter_dir`` (trained on a base whose config is ``config``) as the GGUF LoRA
    file ``path``; its architecture is the base GGUF's, which llama.cpp checks."""
    import gguf

    adapter_config, weights = read_adapter(Path(adapter_dir))
    alpha = lora_alpha(adapter_config)
    writer = gguf.GGUFWriter(path=None, arch=architecture(config, arch).gguf_arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    count = 0
    for base, a, b in lora_pairs(weights, config, arch):
        writer.add_tensor(f"{base}.lora_a", a, raw_dtype=gguf.GGMLQuantizationType.F32)
        writer.add_tensor(f"{base}.lora_b", b, raw_dtype=gguf.GGMLQuantizationType.F32)
        count += 1
    if not count:
        raise ExportError(f"the adapter in {adapter_dir} holds no LoRA matrices")
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
