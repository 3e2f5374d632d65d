"""`prepare`: URLs and files to a run folder with corpus and packed blocks (stages sources, corpus, blocks)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..augment.user_questions import check_support, read_question_file
from ..models.loading import context_length, load_tokenizer, resolve_model
from ..runs import RunDir
from ..runtime.progress import Progress
from ..settings.fields import to_dict
from ..settings.stages import PrepareConfig
from ..sources.fetch import fetch_sources
from .blocks import BlockStats, ensure_blocks
from .clean import build_corpus


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
    questions: list[dict[str, Any]] = field(default_factory=list)  # the user's own pairs, checked


def prepare(config: PrepareConfig, out: str | Path, force: bool = False, progress: Progress | None = None):
    """Fetch, clean and pack into ``out``; the folder appears only when everything succeeded.

    Raises ``NoUsableSourceError`` when no source gave text, ``RunError`` when ``out`` exists and not ``force``,
    ``InterruptedError`` when ``progress.should_stop()`` asked to stop (nothing written).
    """
    progress = progress or Progress()
    RunDir.check_new(out, force)
    questions = [row for path in config.augment.questions for row in read_question_file(path)]  # fail fast
    resolved = resolve_model(config.model.model, config.model.revision, progress)
    tokenizer = load_tokenizer(resolved)
    sources = fetch_sources(config.inputs.urls, config.inputs.files, config.fetch, progress)
    if progress.should_stop():
        raise InterruptedError("prepare stopped while fetching; nothing was written")
    corpus = build_corpus(sources, config.corpus, tokenizer)
    if not corpus.ok:
        raise NoUsableSourceError(corpus.rows)

    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(resolved.path, revision=resolved.revision, token=resolved.token)
    with RunDir.create(out, force=force) as run:
        sections = ("model", "inputs", "fetch", "corpus", "blocks", "augment")
        run.write_config({name: to_dict(getattr(config, name)) for name in sections})
        run.write_sources(corpus.rows)
        run.save_corpus(corpus.to_dataset())
        if questions:
            questions = check_support(questions, corpus.to_dataset().to_list())
            run.write_user_questions(questions)
        # Augmentation needs the model and is generated when training starts; prepare packs the pages alone (the
        # augmentation settings stay in config.yaml for training to use).
        text_format = "raw" if config.blocks.text_format == "none" else config.blocks.text_format
        pages = replace(config.blocks, text_format=text_format, use_paraphrases=False, use_qa=False, replay_share=0.0)
        _, stats, _ = ensure_blocks(run, pages, tokenizer, context_length(model_config), progress)
    return PrepareResult(Path(out), corpus.rows, stats, questions)
