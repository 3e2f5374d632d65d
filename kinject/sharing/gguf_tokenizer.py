"""A byte-level BPE tokenizer (GPT-2 style, SmolLM2's, Llama 3's, Qwen2's) as llama.cpp's ``_set_vocab_gpt2``
writes it into a GGUF file: tokens and their types, the pre-tokenizer llama.cpp names (told by the token ids of
llama.cpp's check text, as ``get_vocab_base_pre`` tells it), merges, special token ids and the chat template.
A tokenizer without merges (sentencepiece) or with a pre-tokenizer kinject does not know is refused.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from .gguf_tensors import ELSEWHERE, ExportError

# The text llama.cpp tokenizes to tell pre-tokenizers apart (convert_hf_to_gguf.py, get_vocab_base_pre) and the
# sha256 of its token ids for the ones kinject knows (from llama.cpp's own table); any other is refused, not guessed.
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
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5, Qwen2, Qwen2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3's
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral's byte-level BPE
}


def add_vocab(writer: Any, tokenizer: Any, vocab_size: int) -> None:
    """The tokenizer as ``_set_vocab_gpt2`` writes it: tokens, their types, the pre-tokenizer, merges, special
    token ids and the chat template (read by gguf's ``SpecialVocab`` from the tokenizer saved in a temporary
    folder, which is all it reads)."""
    import gguf

    check_byte_level(tokenizer)
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
        raise ExportError(
            "the tokenizer has no BPE merges (a sentencepiece tokenizer?): kinject writes only byte-level BPE "
            f"tokenizers as GGUF; {ELSEWHERE}"
        )
    prefix_space = getattr(tokenizer, "add_prefix_space", None)
    prefix_space = settings.get("add_prefix_space") if prefix_space is None else prefix_space
    if prefix_space is not None:
        writer.add_add_space_prefix(bool(prefix_space))
    special.chat_template = special.chat_template or getattr(tokenizer, "chat_template", None)
    if "bos" not in special.add_special_token:  # what the tokenizer does, not what a file may say
        bos = tokenizer.bos_token_id
        special.add_special_token["bos"] = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
    special.add_to_gguf(writer, quiet=True)


def check_byte_level(tokenizer: Any) -> None:
    """Refuse a sentencepiece tokenizer (Llama 2's, Mistral 7B's: ``\u2581`` for spaces, unknown bytes as byte
    tokens), which llama.cpp reads as another tokenizer model (``llama``) kinject does not write."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = getattr(backend, "model", None)
    if getattr(tokenizer, "sp_model", None) is not None or getattr(model, "byte_fallback", False):
        raise ExportError(
            f"the tokenizer ({type(tokenizer).__name__}) is a sentencepiece tokenizer; kinject writes only byte-level "
            f"BPE tokenizers (GPT-2 style: SmolLM2, Llama 3, Qwen2, Mistral's tekken) as GGUF: {ELSEWHERE}"
        )


def vocab_tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every token id below ``vocab_size`` as (text, GGUF token type), as ``get_vocab_base`` makes them: an id the
    tokenizer lacks is ``[PADn]`` (unused), an added special token is a control token."""
    import gguf

    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ExportError(f"the tokenizer has ids beyond the model's vocabulary of {vocab_size}: {ELSEWHERE}")
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
            f"knows {', '.join(sorted(set(_PRE_TOKENIZERS.values())))}): {ELSEWHERE}"
        )
    return _PRE_TOKENIZERS[digest]
