"""What a model's tensors are called and how they are stored in a GGUF file, as llama.cpp's ``convert_hf_to_gguf.py``
writes them for the architectures kinject exports (``ARCHITECTURES``): the tensor names, the permutation of the query
and key rows of a Llama (llama.cpp's rotary embedding pairs neighbouring dimensions, transformers' the two halves of a
head; Qwen2 rotates halves in both), the tensor types (1-D tensors and norms in F32).

Only what kinject checks by a round trip through transformers' GGUF loader is written: Llama, Mistral (llama.cpp's
Llama architecture) and Qwen2, without rope scaling; anything else is refused with its name and the supported list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..runtime.errors import KinjectError

_Q8_BLOCK, _Q8_BLOCK_BYTES = 32, 34  # Q8_0: 32 weights in one f16 scale and 32 int8
ELSEWHERE = "convert it with llama.cpp's convert_hf_to_gguf.py instead"


class ExportError(KinjectError, RuntimeError):
    """The model cannot be exported as asked; the message names what and says what to do."""


@dataclass(frozen=True)
class Architecture:
    """How one transformers architecture is written as GGUF."""

    model_type: str  # the config's model_type
    gguf_arch: str  # llama.cpp's architecture (the metadata keys' prefix)
    permute_qk: bool  # llama.cpp's Llama rotates neighbouring pairs: q and k rows are reordered
    qkv_bias: bool  # the attention's q, k and v projections have biases (Qwen2)


ARCHITECTURES = {
    "LlamaForCausalLM": Architecture("llama", "llama", permute_qk=True, qkv_bias=False),
    "MistralForCausalLM": Architecture("mistral", "llama", permute_qk=True, qkv_bias=False),  # llama.cpp's way
    "Qwen2ForCausalLM": Architecture("qwen2", "qwen2", permute_qk=False, qkv_bias=True),
}
_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
_BIASED = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
_TOP_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}


def architecture(config: Any, arch: str | None = None) -> Architecture:
    """How ``config``'s model is written, after refusing by name what kinject does not write (another architecture,
    rope scaling, biases a Llama does not have, a sliding window Qwen2 would need); ``arch``: the model's class, when
    the config names none (a model built from a config)."""
    arch = (getattr(config, "architectures", None) or [arch or type(config).__name__])[0]
    found = ARCHITECTURES.get(arch)
    model_type = getattr(config, "model_type", None)
    if found is None or model_type != found.model_type:
        raise ExportError(
            f"kinject exports as GGUF only {', '.join(ARCHITECTURES)}; this model is {arch} "
            f"(model_type {model_type!r}): {ELSEWHERE}"
        )
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") not in ("default", None):
        raise ExportError(f"rope scaling {rope.get('rope_type')!r} is not exported by kinject: {ELSEWHERE}")
    if not found.qkv_bias and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        raise ExportError(f"a {arch} with attention or MLP biases is not exported by kinject: {ELSEWHERE}")
    if found.model_type == "qwen2" and getattr(config, "use_sliding_window", False):
        raise ExportError(f"a Qwen2 with sliding-window attention is not exported by kinject: {ELSEWHERE}")
    return found


def check_architecture(config: Any, arch: str | None = None) -> None:
    """Refuse, by name, a model kinject does not write as GGUF (see ``architecture``)."""
    architecture(config, arch)


def context_length(config: Any) -> int:
    """The context llama.cpp is told: a Mistral's sliding window when shorter than its positions (llama.cpp's Llama
    attends to the whole context; within the window both attend alike)."""
    window = getattr(config, "sliding_window", None) if getattr(config, "model_type", None) == "mistral" else None
    return min(config.max_position_embeddings, window or config.max_position_embeddings)


def rope_parameters(config: Any) -> dict[str, Any]:
    """The rope settings of ``config``: transformers 5's ``rope_parameters``, else ``rope_theta``/``rope_scaling``."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return params


def permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """llama.cpp's reordering of query/key rows (``LlamaModel.permute``): from the halves of each head that
    transformers rotates together to the neighbouring pairs llama.cpp rotates. Rows only: a LoRA's B matrix (its
    rows are the output's) is permuted alike."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_name(name: str) -> str:
    """A transformers tensor's GGUF name: ``model.layers.3.mlp.up_proj.weight`` -> ``blk.3.ffn_up.weight``,
    ``model.layers.0.self_attn.q_proj.bias`` -> ``blk.0.attn_q.bias``."""
    stem, _, suffix = name.rpartition(".")
    if stem in _TOP_NAMES and suffix == "weight":
        return f"{_TOP_NAMES[stem]}.weight"
    parts = stem.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_NAMES:
        if suffix == "weight" or (suffix == "bias" and parts[3] in _BIASED):
            return f"blk.{int(parts[2])}.{_LAYER_NAMES[parts[3]]}.{suffix}"
    raise ExportError(f"the tensor {name} has no place in a GGUF file kinject writes: {ELSEWHERE}")


def qk_heads(found: Architecture, config: Any, name: str) -> tuple[int, int] | None:
    """The (heads, key-value heads) ``permute`` takes for the tensor ``name`` (a transformers name ending in
    ``.weight``) of a ``found`` model when llama.cpp reorders its rows, else None."""
    if not found.permute_qk:
        return None
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    if name.endswith("self_attn.q_proj.weight"):
        return n_head, n_head
    if name.endswith("self_attn.k_proj.weight"):
        return n_head, n_kv
    return None


def _skipped(config: Any, name: str) -> bool:
    """Tensors not written: rotary caches, and the output matrix when it is the embedding's (tied)."""
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight")


def gguf_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """Each tensor of ``model`` as (GGUF name, float32 numpy array), q and k permuted where llama.cpp wants it; the
    output matrix is left out when it is the embedding's (tied), as llama.cpp leaves it out."""
    import torch

    config = model.config
    found = architecture(config, type(model).__name__)
    for name, tensor in model.state_dict().items():
        if _skipped(config, name):
            continue
        data = tensor.detach().to("cpu", torch.float32)
        heads = qk_heads(found, config, name)
        if heads is not None:
            data = permute(data, *heads)
        yield gguf_name(name), data.numpy()


def tensor_type(name: str, shape: tuple[int, ...], qtype: str) -> Any:
    """The GGML type a tensor is stored in: 1-D tensors and norms in F32 (llama.cpp reads them so), the others in
    ``qtype``; a Q8_0 tensor whose rows do not split into blocks of 32 falls back to F16, as llama.cpp's does."""
    from gguf import GGMLQuantizationType as T

    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return T.F32
    if qtype == "q8_0":
        return T.Q8_0 if shape[-1] % _Q8_BLOCK == 0 else T.F16
    return T.F16


def estimate_bytes(model: Any, qtype: str) -> int:
    """About how many bytes the GGUF file of ``model`` in ``qtype`` takes: its tensors, plus the vocabulary (about
    64 bytes a token with its merge) and a megabyte of the rest; checked against the free disk space first."""
    from gguf import GGMLQuantizationType as T

    per_weight = {T.F32: 4.0, T.F16: 2.0, T.Q8_0: _Q8_BLOCK_BYTES / _Q8_BLOCK}
    total = 0.0
    for name, tensor in model.state_dict().items():
        if not _skipped(model.config, name):
            total += tensor.numel() * per_weight[tensor_type(gguf_name(name), tuple(tensor.shape), qtype)]
    return int(total) + 64 * model.config.vocab_size + (1 << 20)
