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
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..runs import RunDir
from ..runtime.progress import Progress
from ..settings.choices import TextFormat
from ..settings.declare import check_choice
from ..settings.fields import to_dict
from ..settings.stages import BlocksConfig
from .mix import balanced, spread_forms
from .prefix import IGNORE_INDEX, share_prefix, template_prefix


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
    replay_tokens: int = 0  # tokens of replay examples (their share of corpus_tokens is BlocksConfig.replay_share)
    target_tokens: int = 0  # tokens with a loss (answers only, for question-answer and replay examples)
    teacher_rows: int = 0  # question-answer turns with a teacher (qa_target "teacher" or "both")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PACKING_VERSION = 5  # bump when packing changes, so cached blocks are packed again (5: replay's forms in turn)


def chat_document_tokens(text: str, title: str, tokenizer: Any) -> list[int]:
    """A document as one chat exchange: the user asks about its title, the assistant answers with the text.

    Facts learnt only as raw text are often not recalled in chat form; this puts them in the assistant's voice.
    """
    from ..augment import title_subject

    # A short subject, as template questions ask: a whole headline makes an odd question ("What do you know about
    # Amazon EC2 P5 instances are now generally available?").
    question = f"What do you know about {title_subject(title) or 'this topic'}?"
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


@dataclass
class Doc:
    """One document to pack: its tokens, which of them are targets, and how it may be split."""

    ids: list[int]
    labels: list[int] | None = None  # per token: the target, or IGNORE_INDEX; None: every token is a target
    replay: bool = False  # replay data (the base model's own answers): a soft target for replay_loss "kl"
    whole: bool = False  # start a new block rather than split it, when it fits in one
    teacher: list[int] | None = None  # the same turn with its passage in the prompt (qa_target "teacher"/"both")
    hard: bool = True  # with a teacher: the answer's tokens are targets too


def pack_docs(
    docs: Iterable[Doc],
    block_size: int,
    pad_id: int,
    pad_last: bool = False,
    per_row: bool = False,
    prefix: list[int] | None = None,
) -> tuple[list[dict[str, list[int]]], int]:
    """Pack documents into blocks of at most ``block_size``; returns (blocks, total real tokens).

    Position ids restart at each document and each block. A ``whole`` document that does not fit in what is
    left of a block starts the next one, so a question and its answer stay together (that block is shorter).
    ``per_row``: every document is a block of its own (a longer one is split), for batches of examples.
    ``prefix``: the chat template's header, kept once a block (``prefix.share_prefix``; blocks are filled as if
    every copy stayed, so they hold the same documents either way).
    """
    blocks: list[dict[str, list[int]]] = []
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    replay: list[int] = []
    total = 0

    teacher: dict[str, Any] = {}

    def flush() -> None:
        blocks.append({"input_ids": ids[:], "labels": labels[:], "position_ids": pos[:], "replay_mask": replay[:]})
        if per_row:  # one example a row: its teacher (or none) goes with it
            blocks[-1].update(teacher_ids=teacher.get("ids") or [], hard=int(teacher.get("hard", True)))
        for column in (ids, labels, pos, replay):
            column.clear()

    for doc in docs:
        if per_row and ids:
            flush()
        teacher.update(ids=doc.teacher, hard=doc.hard)
        total += len(doc.ids)
        targets = doc.labels if doc.labels is not None else doc.ids
        if doc.whole and ids and len(doc.ids) <= block_size and len(doc.ids) > block_size - len(ids):
            flush()
        offset = 0
        while offset < len(doc.ids):
            room = block_size - len(ids)
            piece = doc.ids[offset : offset + room]
            ids.extend(piece)
            labels.extend(targets[offset : offset + room])
            pos.extend(range(len(piece)))  # restarts per document and per block
            replay.extend([int(doc.replay)] * len(piece))
            offset += len(piece)
            if len(ids) == block_size:
                flush()
    if ids:
        flush()
    for block in blocks:
        if prefix is not None:
            share_prefix(block, prefix)
        n = len(block["input_ids"])
        block["attention_mask"] = [1] * n
        if pad_last and n < block_size:
            pad = block_size - n
            block["input_ids"] += [pad_id] * pad
            block["labels"] += [IGNORE_INDEX] * pad
            block["attention_mask"] += [0] * pad
            block["position_ids"] += [0] * pad
            block["replay_mask"] += [0] * pad
            if "segment_ids" in block:
                block["segment_ids"] += [-1] * pad
    return blocks, total


def pack_token_lists(
    docs: Iterable[list[int]], block_size: int, pad_id: int, pad_last: bool = False
) -> tuple[list[dict[str, list[int]]], int]:
    """Pack token lists (every token a target) into blocks of at most ``block_size``."""
    return pack_docs((Doc(list(d)) for d in docs), block_size, pad_id, pad_last)


def chat_example(question: str, answer: str, tokenizer: Any, ended: bool = True) -> tuple[list[int], list[int]]:
    """A question and its answer as one chat exchange through the chat template: (ids, labels), the loss on the
    answer and the turn's end only (the question and the template's prompt are IGNORE_INDEX). An answer that did
    not end (a replayed answer cut at its length limit) gets no end of turn: it teaches going on, not stopping."""
    from ..models.generate import chat_prompt_ids

    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": question}])
    if not ended:
        ids = prompt + list(tokenizer(answer, add_special_tokens=False)["input_ids"])
        return ids, [IGNORE_INDEX] * len(prompt) + ids[len(prompt) :]
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    full = list(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])
    if full[: len(prompt)] != prompt:  # a template that renders the prompt otherwise inside a whole exchange
        full = prompt + list(tokenizer(answer, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return full, [IGNORE_INDEX] * len(prompt) + full[len(prompt) :]


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
    config = config or BlocksConfig()
    progress = progress or Progress()
    text_format = config.text_format
    block_size = min(config.block_size, max_context) if max_context else config.block_size
    check_choice(text_format, "text_format", TextFormat)
    _check_chat_template(text_format, tokenizer)
    titles = titles or [""] * len(texts)
    progress.start("tokenize", total=len(texts), unit="doc")
    docs = []
    for text, title in zip(texts, titles, strict=True):
        docs += [Doc(ids) for ids in _document_forms(text, title, tokenizer, text_format)]
        progress.advance(1)
    progress.finish()
    return _pack(docs, tokenizer, config, block_size)


def _check_chat_template(text_format: str, tokenizer: Any) -> None:
    """Refuse packing pages as chat turns with a tokenizer that has no chat template."""
    if text_format in ("chat", "both") and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"text_format {text_format!r} needs a chat model: this tokenizer has no chat template")


def _document_forms(text: str, title: str, tokenizer: Any, text_format: str) -> list[list[int]]:
    forms = []
    if text_format in ("raw", "both"):
        forms.append(document_tokens(text, tokenizer))
    if text_format in ("chat", "both"):
        forms.append(chat_document_tokens(text, title, tokenizer))
    return forms


def _pack(docs: list[Doc], tokenizer: Any, config: BlocksConfig, block_size: int, share: bool = True):
    from datasets import Dataset

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    per_row = config.packing == "rows"
    prefix = template_prefix(tokenizer) if share and not per_row else None
    blocks, total = pack_docs(docs, block_size, pad_id, config.pad_last, per_row, prefix)
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
    stats.replay_tokens = sum(len(d.ids) for d in docs if d.replay)  # as corpus_tokens counts them
    stats.target_tokens = sum(sum(label != IGNORE_INDEX for label in b["labels"]) for b in blocks)
    columns = ("input_ids", "labels", "position_ids", "attention_mask", "replay_mask")
    if prefix is not None:
        columns += ("segment_ids", "shared")
    if any(b.get("teacher_ids") for b in blocks):
        columns += ("teacher_ids", "hard")
        stats.teacher_rows = sum(bool(b["teacher_ids"]) for b in blocks)
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


def augmentation_kinds(config: BlocksConfig) -> tuple[str, ...]:
    """The kinds of augmentation (``kinject.augment``) these blocks are packed with."""
    kinds = []
    if config.use_paraphrases:
        kinds.append("paraphrase")
    if config.use_qa:
        kinds.append("qa")
    if config.replay_share > 0:
        kinds.append("replay")
    return tuple(kinds)


def user_questions(augmentation: Any) -> list[dict[str, Any]]:
    """The user's own question-answer rows of an augmentation (trained whenever the run has them)."""
    return augmentation.kept("user") if augmentation is not None else []


def qa_docs(rows: list[dict[str, Any]], documents: list[dict[str, Any]], config: BlocksConfig, tokenizer: Any):
    """Question-answer turns as training examples; with a teacher (``qa_target``), each also as the turn the
    teacher reads: the question after its passage, as augmentation's round trip asks it."""
    from ..augment import split_passages
    from ..augment.prompts import answer_conversation

    text = {p.id: p.text for p in split_passages(documents)} if config.qa_target != "answer" else {}
    docs = []
    for row in rows:
        doc = Doc(*chat_example(row["question"], row["answer"], tokenizer), whole=True)
        passage = text.get(row.get("passage", ""))
        if passage:
            prompt = answer_conversation(passage, row["question"])[0]["content"]
            doc.teacher = chat_example(prompt, row["answer"], tokenizer)[0]
            doc.hard = config.qa_target == "both"
        docs.append(doc)
    return docs


def training_docs(
    documents: list[dict[str, Any]], config: BlocksConfig, tokenizer: Any, augmentation: Any = None, seed: int = 0
) -> list[Doc]:
    """What a training packs: the corpus documents in ``text_format``, the kept paraphrases (raw text) and
    question-answer pairs (chat turns, loss on the answers), and replay examples until their tokens are
    ``replay_share`` of the total (prompts included; the last one cut to fit). With augmentation, shuffled with
    ``seed`` (the training's), so the kinds are spread over the blocks rather than one after another and each
    training seed packs its own blocks."""
    docs = [
        Doc(ids)
        for d in documents
        for ids in _document_forms(d["text"], d.get("title", ""), tokenizer, config.text_format)
    ]
    kinds = augmentation_kinds(config)
    if config.qa_target != "answer" and not (config.use_qa and config.packing == "rows"):
        raise ValueError(
            f"qa_target {config.qa_target!r} needs use_qa and packing 'rows' (its teacher reads each question-answer "
            "turn with its passage, one turn a row): add --use-qa --packing rows, or leave qa_target 'answer'"
        )
    if not kinds and not user_questions(augmentation):
        if not docs:
            raise ValueError(
                "text_format 'none' leaves nothing to train on: add use_qa or use_paraphrases, or your own questions "
                "(--questions)"
            )
        return docs
    if augmentation is None:
        raise ValueError(f"these blocks need the run's augmentation ({', '.join(kinds)})")
    docs += [
        Doc(*chat_example(r["question"], r["answer"], tokenizer), whole=True) for r in user_questions(augmentation)
    ]
    if config.use_paraphrases:
        docs += [Doc(document_tokens(r["text"], tokenizer)) for r in augmentation.kept("paraphrase")]
    if config.use_qa:
        rows = balanced(augmentation.kept("qa")) if config.balance_facts else augmentation.kept("qa")
        docs += qa_docs(rows, documents, config, tokenizer)
    rng = random.Random(seed)
    if config.replay_share > 0:
        docs += _replay_docs(
            augmentation.kept("replay"), config.replay_share, sum(len(d.ids) for d in docs), tokenizer, rng
        )
    rng.shuffle(docs)
    return docs


def _replay_docs(rows: list[dict[str, Any]], share: float, other_tokens: int, tokenizer: Any, rng: random.Random):
    if not rows:
        raise ValueError(
            "replay_share is set but no replay answer was kept: the base model gave only empty answers to the "
            "replay prompts, or replay_prompts is 0 (set replay_share 0 to train without replay)"
        )
    target = round(share / (1 - share) * other_tokens)
    order = spread_forms(rows, rng)
    docs, tokens, i = [], 0, 0
    while tokens < target:
        row = order[i % len(order)]
        i += 1
        ids, labels = chat_example(row["question"], row["answer"], tokenizer, ended=row.get("ended", True))
        cut = min(len(ids), target - tokens)
        docs.append(Doc(ids[:cut], labels[:cut], replay=True, whole=True))
        tokens += cut
    return docs


def ensure_blocks(
    run: RunDir,
    config: BlocksConfig,
    tokenizer: Any,
    max_context: int | None = None,
    progress: Progress | None = None,
    augmentation: Any = None,
    share: bool = True,
    seed: int = 0,
):
    """The run's blocks for ``config``: from the cache, else packed from its corpus (and ``augmentation``, a
    ``kinject.augment.Augmentation``, when the config uses it) and cached. ``share``: keep the chat header once a block
    (``prefix.shares_header`` says whether the model can); ``seed``: the training's, which shuffles what augmented
    blocks hold (blocks of the corpus alone are the same for every seed).

    Returns (``datasets.Dataset``, ``BlockStats``, packed_now).
    """
    progress = progress or Progress()
    corpus = run.load_corpus()
    block_size = min(config.block_size, max_context) if max_context else config.block_size
    corpus_digest = hashlib.sha256("\n".join(corpus["sha256"]).encode("ascii")).hexdigest()
    kinds = augmentation_kinds(config)
    if kinds and augmentation is None:
        raise ValueError(f"these blocks need the run's augmentation ({', '.join(kinds)})")
    if user_questions(augmentation):
        kinds = (*kinds, "user")
    if kinds:
        corpus_digest += "+" + "+".join(augmentation.keys[k] for k in kinds) + f"+seed{seed}"
    corpus_digest += "" if share else "+unshared"
    key = blocks_key(config, tokenizer_fingerprint(tokenizer), corpus_digest, block_size)
    cached = run.load_blocks(key)
    if cached is not None:
        dataset, info = cached
        return dataset, BlockStats(**info["stats"]), False
    _check_chat_template(config.text_format, tokenizer)
    progress.start("pack blocks", total=None)
    docs = training_docs(corpus.to_list(), config, tokenizer, augmentation, seed)
    dataset, stats = _pack(docs, tokenizer, config, block_size, share)
    progress.finish()
    run.save_blocks(key, dataset, {"key": key, "config": to_dict(config), "stats": stats.to_dict()})
    return dataset, stats, True
