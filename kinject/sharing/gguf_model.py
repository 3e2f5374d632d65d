"""A model kinject exports (``gguf_tensors.ARCHITECTURES``: Llama, Mistral, Qwen2) and its byte-level BPE tokenizer
as one GGUF file for llama.cpp and Ollama, written the way llama.cpp's ``convert_hf_to_gguf.py`` writes it: the tensors
of ``gguf_tensors``, the tokenizer of ``gguf_tokenizer`` and the metadata ``TextModel.set_gguf_parameters`` writes.

No address, path or token goes into the metadata: the file is made to be shared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..settings.services import GGUF_TYPES as QTYPES  # the GGUF types kinject writes
from .gguf_tensors import ExportError, architecture, context_length, gguf_tensors, rope_parameters, tensor_type
from .gguf_tokenizer import add_vocab


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
    found = architecture(model.config, type(model).__name__)
    writer = gguf.GGUFWriter(path=None, arch=found.gguf_arch)
    _add_parameters(writer, model.config, qtype, name)
    add_vocab(writer, tokenizer, model.config.vocab_size)
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
    """The model's metadata, as ``TextModel.set_gguf_parameters`` and ``LlamaModel.set_gguf_parameters`` write it
    (``Qwen2Model`` writes the same keys under its own prefix)."""
    import gguf

    file_types = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(context_length(config))
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(file_types[qtype])
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
