"""Tokenize the corpus and pack it into fixed-size training blocks (stage: blocks); the one owner of blocks.

Blocks are cached in the run folder under a key made of everything they depend on (the corpus, the tokenizer, the
block size after capping at the model's context, the text format, padding): ``ensure_blocks`` returns the cached
blocks a stage asks for and packs only when they are missing, so `prepare` and `train` never disagree and a
training with other settings packs once.

Unlike the case study's ``group_texts`` (which drops the tail that does not fill a block), every token is kept: the
last block is shorter, or padded with its padding masked out of the loss. Documents are joined with EOS (and
BOS where the tokenizer adds one), and position ids restart at each document and at each block start, so a backend
with variable-length attention can keep attention within documents and no position exceeds the block size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .config import BlocksConfig, to_dict
from .progress import Progress
from .runs import RunDir

IGNORE_INDEX = -100


@dataclass
class BlockStats:
    """What packing produced; written to ``blocks.json``."""

    documents: int
    corpus_tokens: int  # document tokens plus separators
    tokens_kept: int
    blocks: int
    block_size: int
    slots: int  # blocks * block_size
    padding_tokens: int
    packing_efficiency: float  # real tokens / slots

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TEXT_FORMATS = ("raw", "chat", "both")
PACKING_VERSION = 1  # bump when packing changes, so cached blocks are packed again


def chat_document_tokens(text: str, title: str, tokenizer: Any) -> list[int]:
    """A document as one chat exchange: the user asks about its title, the assistant answers with the text.

    Facts learnt only as raw text are often not recalled in chat form; this puts them in the assistant's voice.
    """
    question = f"What do you know about {title.strip() or 'this topic'}?"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": text}]
    return list(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])


def document_tokens(text: str, tokenizer: Any) -> list[int]:
    """One document's tokens with its separators: BOS as the tokenizer adds it, then EOS."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]
    head = [bos] if adds_bos else []
    tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return head + ids + tail


def pack_token_lists(
    docs: Iterable[list[int]], block_size: int, pad_id: int, pad_last: bool = False
) -> tuple[list[dict[str, list[int]]], int]:
    """Pack token lists into blocks of at most ``block_size``; returns (blocks, total real tokens)."""
    blocks: list[dict[str, list[int]]] = []
    ids: list[int] = []
    pos: list[int] = []
    total = 0

    def flush() -> None:
        blocks.append({"input_ids": ids[:], "position_ids": pos[:]})
        ids.clear()
        pos.clear()

    for doc in docs:
        total += len(doc)
        offset = 0
        while offset < len(doc):
            room = block_size - len(ids)
            piece = doc[offset : offset + room]
            ids.extend(piece)
            pos.extend(range(len(piece)))  # restarts per document and per block
            offset += len(piece)
            if len(ids) == block_size:
                flush()
    if ids:
        flush()
    for block in blocks:
        n = len(block["input_ids"])
        block["labels"] = block["input_ids"][:]
        block["attention_mask"] = [1] * n
        if pad_last and n < block_size:
            pad = block_size - n
            block["input_ids"] += [pad_id] * pad
            block["labels"] += [IGNORE_INDEX] * pad
            block["attention_mask"] += [0] * pad
            block["position_ids"] += [0] * pad
    return blocks, total


def pack_blocks(
    texts: list[str],
    tokenizer: Any,
    config: BlocksConfig | None = None,
    max_context: int | None = None,
    progress: Progress | None = None,
    titles: list[str] | None = None,
):
    """Tokenize ``texts`` and pack them; returns (``datasets.Dataset``, ``BlockStats``). No caching: see
    ``ensure_blocks`` for a run's blocks.

    ``block_size`` is capped at ``max_context`` (the model's context length) when given. ``config.text_format`` "chat"
    packs each document as a chat exchange (needs a chat template), "both" packs the raw and the chat form.
    """
    from datasets import Dataset

    config = config or BlocksConfig()
    progress = progress or Progress()
    text_format = config.text_format
    block_size = min(config.block_size, max_context) if max_context else config.block_size
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"text_format must be one of {', '.join(TEXT_FORMATS)}, got {text_format!r}")
    if text_format != "raw" and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"text_format {text_format!r} needs a chat model: this tokenizer has no chat template")
    titles = titles or [""] * len(texts)
    progress.start("tokenize", total=len(texts), unit="doc")
    docs = []
    for text, title in zip(texts, titles, strict=True):
        if text_format in ("raw", "both"):
            docs.append(document_tokens(text, tokenizer))
        if text_format in ("chat", "both"):
            docs.append(chat_document_tokens(text, title, tokenizer))
        progress.advance(1)
    progress.finish()
    blocks, total = pack_token_lists(docs, block_size, pad_id, config.pad_last)
    slots = len(blocks) * block_size
    stats = BlockStats(
        documents=len(docs),
        corpus_tokens=total,
        tokens_kept=sum(sum(b["attention_mask"]) for b in blocks),
        blocks=len(blocks),
        block_size=block_size,
        slots=slots,
        padding_tokens=sum(len(b["attention_mask"]) - sum(b["attention_mask"]) for b in blocks),
        packing_efficiency=round(total / slots, 4) if slots else 0.0,
    )
    columns = ("input_ids", "labels", "position_ids", "attention_mask")
    dataset = Dataset.from_dict({c: [b[c] for b in blocks] for c in columns})
    return dataset, stats


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of what makes a tokenizer's output: its vocabulary and rules, chat template and special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    rules = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    special = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
    text = json.dumps([rules, getattr(tokenizer, "chat_template", None), special], default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def blocks_key(config: BlocksConfig, tokenizer_digest: str, corpus_digest: str, block_size: int) -> str:
    """The cache key of a packing: readable settings, then a digest of everything the blocks depend on."""
    settings = {**to_dict(config), "block_size": block_size}  # the size packed, after capping at the context
    inputs = [PACKING_VERSION, settings, tokenizer_digest, corpus_digest]
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    pad = "-padded" if config.pad_last else ""
    return f"{block_size}-{config.text_format}{pad}-{digest}"


def ensure_blocks(
    run: RunDir,
    config: BlocksConfig,
    tokenizer: Any,
    max_context: int | None = None,
    progress: Progress | None = None,
):
    """The run's blocks for ``config``: from the cache, else packed from its corpus and cached.

    Returns (``datasets.Dataset``, ``BlockStats``, packed_now).
    """
    progress = progress or Progress()
    corpus = run.load_corpus()
    block_size = min(config.block_size, max_context) if max_context else config.block_size
    corpus_digest = hashlib.sha256("\n".join(corpus["sha256"]).encode("ascii")).hexdigest()
    key = blocks_key(config, tokenizer_fingerprint(tokenizer), corpus_digest, block_size)
    cached = run.load_blocks(key)
    if cached is not None:
        dataset, info = cached
        return dataset, BlockStats(**info["stats"]), False
    dataset, stats = pack_blocks(list(corpus["text"]), tokenizer, config, max_context, progress, list(corpus["title"]))
    run.save_blocks(key, dataset, {"key": key, "config": to_dict(config), "stats": stats.to_dict()})
    return dataset, stats, True
