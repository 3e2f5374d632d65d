"""`prepare`: URLs and files to a run folder with corpus and packed blocks (stages sources, corpus, blocks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runs
from .blocks import BlockStats, pack_blocks
from .config import PrepareConfig, to_dict
from .corpus import build_corpus
from .models import context_length, load_tokenizer, resolve_model
from .progress import Progress
from .sources import fetch_sources


class NoUsableSourceError(RuntimeError):
    """Every source failed; ``rows`` says why for each."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows
        lines = [f"  {r['input']}: {r['status']}: {r['error'] or 'no text'}" for r in rows]
        super().__init__("no usable source, nothing written:\n" + "\n".join(lines))


@dataclass
class PrepareResult:
    """What `prepare` wrote."""

    run_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    stats: BlockStats | None = None


def prepare(config: PrepareConfig, out: str | Path, force: bool = False, progress: Progress | None = None):
    """Fetch, clean and pack into ``out``; the folder appears only when everything succeeded.

    Raises ``NoUsableSourceError`` when no source gave text, ``runs.RunError`` when ``out`` exists and not
    ``force``.
    """
    progress = progress or Progress()
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise runs.RunError(f"{out} already exists; choose another --out or pass --force to replace it")
    resolved = resolve_model(config.model.model, config.model.revision, progress)
    tokenizer = load_tokenizer(resolved)
    sources = fetch_sources(config.urls, config.files, config.fetch, progress)
    corpus = build_corpus(sources, config.corpus, tokenizer)
    if not corpus.ok:
        raise NoUsableSourceError(corpus.rows)

    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(resolved.path, revision=resolved.revision, token=resolved.token)
    texts = [d["text"] for d in corpus.documents]
    dataset, stats = pack_blocks(texts, tokenizer, config.blocks, context_length(model_config), progress)
    with runs.staged_dir(out, force=force) as tmp:
        runs.write_config(
            tmp,
            {
                "model": to_dict(config.model),
                "inputs": {"urls": config.urls, "files": config.files},
                "fetch": to_dict(config.fetch),
                "corpus": to_dict(config.corpus),
                "blocks": {**to_dict(config.blocks), "block_size_used": stats.block_size},
            },
        )
        runs.write_jsonl(tmp / runs.SOURCES, corpus.rows)
        corpus.to_dataset().save_to_disk(str(tmp / runs.CORPUS))
        dataset.save_to_disk(str(tmp / runs.BLOCKS))
        runs.atomic_write_json(tmp / runs.BLOCKS_JSON, stats.to_dict())
    return PrepareResult(out, corpus.rows, stats)
