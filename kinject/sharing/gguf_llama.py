"""A Llama-architecture model (a ``LlamaForCausalLM`` and its BPE tokenizer) as one GGUF file for llama.cpp and
Ollama, written the way llama.cpp's ``convert_hf_to_gguf.py`` writes a ``LlamaModel``: the same tensor names, the
same permutation of the query and key rows (llama.cpp's rotary embedding pairs neighbouring dimensions, transformers'
the two halves of a head), the same tensor types (1-D tensors and norms in F32) and the same metadata.

Only what kinject can check is written: the Llama architecture without rope scaling or biases, a GPT-2-style
byte-level BPE tokenizer whose pre-tokenizer llama.cpp names; anything else is refused with its name, pointing to
llama.cpp's own converter. No address, path or token goes into the metadata: the file is made to be shared.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..runtime.errors import KinjectError
from ..settings.services import GGUF_TYPES as QTYPES  # the GGUF types kinject writes

_Q8_BLOCK, _Q8_BLOCK_BYTES = 32, 34  # Q8_0: 32 weights in one f16 scale and 32 int8
# The text llama.cpp tokenizes to tell pre-tokenizers apart (convert_hf_to_gguf.py, get_vocab_base_pre) and the
# sha256 of its token ids for the ones kinject knows; any other tokenizer is refused rather than guessed.
_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) "
    "✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= "
    "нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure "
    "I'll make it, 'D you like some tea? We'Ve a'lL"
)
_PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
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
_TOP_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_ELSEWHERE = "convert it with llama.cpp's convert_hf_to_gguf.py instead"


class ExportError(KinjectError, RuntimeError):
    """The model cannot be exported as asked; the message names what and says what to do."""


def check_architecture(config: Any, arch: str | None = None) -> None:
    """Refuse, by name, a model kinject does not write as GGUF (another architecture, rope scaling, biases);
    ``arch``: the model's class, when the config names none (a model built from a config)."""
    arch = (getattr(config, "architectures", None) or [arch or type(config).__name__])[0]
    if getattr(config, "model_type", None) != "llama" or arch != "LlamaForCausalLM":
        raise ExportError(
            f"kinject exports only Llama-architecture models (LlamaForCausalLM) as GGUF; this model is {arch} "
            f"(model_type {getattr(config, 'model_type', None)!r}): {_ELSEWHERE}"
        )
    rope = _rope(config)
    if rope.get("rope_type", "default") not in ("default", None):
        raise ExportError(f"rope scaling {rope.get('rope_type')!r} is not exported by kinject: {_ELSEWHERE}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ExportError(f"a Llama with attention or MLP biases is not exported by kinject: {_ELSEWHERE}")


def _rope(config: Any) -> dict[str, Any]:
    """The rope settings of ``config``: transformers 5's ``rope_parameters``, else ``rope_theta``/``rope_scaling``."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return params


def permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """llama.cpp's reordering of query/key rows (``LlamaModel.permute``): from the halves of each head that
    transformers rotates together to the neighbouring pairs llama.cpp rotates."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_name(name: str) -> str:
    """A transformers Llama tensor's GGUF name: ``model.layers.3.mlp.up_proj.weight`` -> ``blk.3.ffn_up.weight``."""
    stem, _, suffix = name.rpartition(".")
    if stem in _TOP_NAMES and suffix == "weight":
        return f"{_TOP_NAMES[stem]}.weight"
    parts = stem.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_NAMES and suffix == "weight":
        return f"blk.{int(parts[2])}.{_LAYER_NAMES[parts[3]]}.weight"
    raise ExportError(f"the tensor {name} has no place in a GGUF Llama: {_ELSEWHERE}")


def gguf_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """Each tensor of ``model`` as (GGUF name, float32 numpy array), q and k permuted; the output matrix is left out
    when it is the embedding's (tied), as llama.cpp leaves it out."""
    import torch

    config = model.config
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue
        data = tensor.detach().to("cpu", torch.float32)
        if name.endswith("self_attn.q_proj.weight"):
            data = permute(data, n_head, n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            data = permute(data, n_head, n_kv)
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
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue
        total += tensor.numel() * per_weight[tensor_type(gguf_name(name), tuple(tensor.shape), qtype)]
    return int(total) + 64 * model.config.vocab_size + (1 << 20)


def write_gguf(
    path: Path, model: Any, tokenizer: Any, qtype: str, name: str, should_stop: Callable[[], bool] = lambda: False
) -> Path:
    """Write ``model`` and ``tokenizer`` as the GGUF file ``path`` with tensors in ``qtype`` (``QTYPES``).

    ``should_stop()`` is asked between tensors and raises ``InterruptedError``: the caller writes into a temporary
    folder, so a stopped export leaves nothing.
    """
    import gguf

    if qtype not in QTYPES:
        raise ExportError(f"GGUF type {qtype!r} is not one kinject writes; choose one of {', '.join(QTYPES)}")
    check_architecture(model.config, type(model).__name__)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_parameters(writer, model.config, qtype, name)
    _add_vocab(writer, tokenizer, model.config.vocab_size)
    for tensor_name, data in gguf_tensors(model):
        if should_stop():
            raise InterruptedError("export stopped before the GGUF file was written; nothing was written")
        ggml_type = tensor_type(tensor_name, data.shape, qtype)
        writer.add_tensor(tensor_name, gguf.quants.quantize(data, ggml_type), raw_dtype=ggml_type)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_parameters(writer: Any, config: Any, qtype: str, name: str) -> None:
    """The model's metadata, as ``TextModel.set_gguf_parameters`` and ``LlamaModel.set_gguf_parameters`` write it."""
    import gguf

    file_types = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(_rope(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(file_types[qtype])
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_vocab(writer: Any, tokenizer: Any, vocab_size: int) -> None:
    """The tokenizer as ``_set_vocab_gpt2`` writes it: tokens, their types, the pre-tokenizer, merges, special
    token ids and the chat template (read by gguf's ``SpecialVocab`` from the tokenizer saved in a temporary
    folder, which is all it reads)."""
    import gguf

    tokens, types = vocab_tokens(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="kinject-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        settings = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise ExportError(f"the tokenizer has no BPE merges: {_ELSEWHERE}")
    prefix_space = getattr(tokenizer, "add_prefix_space", None)
    prefix_space = settings.get("add_prefix_space") if prefix_space is None else prefix_space
    if prefix_space is not None:
        writer.add_add_space_prefix(bool(prefix_space))
    special.chat_template = special.chat_template or getattr(tokenizer, "chat_template", None)
    if "bos" not in special.add_special_token:  # what the tokenizer does, not what a file may say
        bos = tokenizer.bos_token_id
        special.add_special_token["bos"] = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
    special.add_to_gguf(writer, quiet=True)


def vocab_tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token id below ``vocab_size`` as (text, GGUF token type), as ``get_vocab_base`` makes them: an id the
    tokenizer lacks is ``[PADn]`` (unused), an added special token is a control token."""
    import gguf

    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ExportError(f"the tokenizer has ids beyond the model's vocabulary of {vocab_size}: {_ELSEWHERE}")
    reverse = {i: t for t, i in vocab.items()}
    added, decoder = tokenizer.get_added_vocab(), tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            special = decoder[i].special or (token.startswith("<|") and token.endswith("|>"))
            tokens.append(token if special else token.replace("\u2581", " "))
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def pre_tokenizer(tokenizer: Any) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer, told by the ids of llama.cpp's check text; an unknown
    one is refused (llama.cpp would split text otherwise than the model was trained on)."""
    digest = hashlib.sha256(str(tokenizer.encode(_CHECK_TEXT)).encode()).hexdigest()
    if digest not in _PRE_TOKENIZERS:
        raise ExportError(
            f"the tokenizer's pre-tokenizer is not one kinject knows for GGUF (check hash {digest[:12]}; kinject "
            f"knows {', '.join(_PRE_TOKENIZERS.values())}): {_ELSEWHERE}"
        )
    return _PRE_TOKENIZERS[digest]
