"""The ``augment`` verb: the run's generated data of the kinds asked for, from the cache or generated and saved."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import RunDir, read_jsonl, write_jsonl
from ..runtime.progress import Progress
from ..settings.fields import from_dict, to_dict
from ..settings.stages import AugmentConfig, ModelConfig
from .cache import KINDS, augmentation_key, digest, loaded_as, shared_replay
from .generation import generate_paraphrases, generate_qa, generate_replay, teacher_answers
from .generators import ChatGenerator, EndpointGenerator, LocalGenerator
from .passages import Passage, split_passages
from .report import data_report
from .user_questions import read_questions, user_rows


@dataclass
class Augmentation:
    """The generated rows of each kind asked for, and what making them cost."""

    rows: dict[str, list[dict[str, Any]]]
    keys: dict[str, str]
    seconds: dict[str, float]
    generated: list[str]  # the kinds generated now (the others came from the cache)
    report: dict[str, Any] | None = None  # the data report of the question-answer pairs (``report.data_report``)

    def kept(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.get(kind, []) if r.get("kept")]


def ensure_augmentation(
    run_dir: str | Path | RunDir,
    config: AugmentConfig,
    kinds: tuple[str, ...] = KINDS,
    progress: Progress | None = None,
    base: LocalGenerator | None = None,
) -> Augmentation:
    """The run's augmentation of ``kinds``: from the cache, else generated and saved. ``base`` is the run's model
    already loaded (training passes its own, so it is not loaded twice); otherwise it is loaded when needed."""
    run = RunDir(run_dir).require()
    progress = progress or Progress()
    documents = run.load_corpus().to_list()
    model_cfg = from_dict(ModelConfig, run.section("model"), "model")
    corpus_digest = digest([d["sha256"] for d in documents])
    model_id = f"{model_cfg.model}@{model_cfg.revision}" if model_cfg.revision else model_cfg.model
    wanted = {kind: augmentation_key(kind, config, corpus_digest, model_id, loaded_as(base)) for kind in kinds}
    result = Augmentation({}, dict(wanted), {}, [])
    _add_user_questions(run, config, documents, result, progress)
    missing = []
    for kind, key in wanted.items():
        cached = run.load_augmentation(key) or (_load_shared_replay(run, key) if kind == "replay" else None)
        if cached is None:
            missing.append(kind)
        else:
            result.rows[kind], info = cached
            result.seconds[kind] = info.get("seconds", 0.0)
    passages = split_passages(documents)
    if not missing:
        return _reported(run, result, passages)
    if base is None and ("replay" in missing or config.generator == "base"):
        base = _load_base(model_cfg, config, progress)
    generator: ChatGenerator = (
        base if config.generator == "base" else EndpointGenerator(config.generator, config.generator_model, progress)
    )
    for kind in missing:
        started = time.time()
        rows = _generate(kind, passages, generator, base, config, progress)
        seconds = round(time.time() - started, 1)
        kept = sum(bool(r["kept"]) for r in rows)
        info = {
            "kind": kind,
            "key": wanted[kind],
            "rows": len(rows),
            "kept": kept,
            "seconds": seconds,
            "generator": generator.name if kind != "replay" else "base",
            "config": to_dict(config),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        taught = teacher_answers(rows)
        if taught is not None:
            info["teacher_answers"] = taught
        run.save_augmentation(wanted[kind], rows, info)
        if kind == "replay":
            _save_shared_replay(rows, info)
        teacher = f" ({taught} answers written by the generator)" if taught is not None else ""
        progress.log(f"augment: {kind}: kept {kept} of {len(rows)} in {seconds:.0f} s{teacher}")
        result.rows[kind], result.seconds[kind] = rows, seconds
        result.generated.append(kind)
    return _reported(run, result, passages)


def _load_shared_replay(run: RunDir, key: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """Replay answers another run of this machine generated (copied into this run), or None."""
    path = shared_replay(key)
    try:
        rows = read_jsonl(path) if path.is_file() else None
    except (OSError, ValueError):
        return None  # a damaged shared copy is generated again
    if not rows:
        return None
    info = {
        "kind": "replay",
        "key": key,
        "rows": len(rows),
        "kept": sum(bool(r.get("kept")) for r in rows),
        "seconds": 0.0,
        "generator": "base",
        "shared": str(path),
    }
    run.save_augmentation(key, rows, info)
    return rows, info


def _save_shared_replay(rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """Keep replay answers for the next run (a machine that cannot write there generates them again)."""
    with contextlib.suppress(OSError):
        write_jsonl(shared_replay(info["key"]), rows)


def _reported(run: RunDir, result: Augmentation, passages: list[Passage]) -> Augmentation:
    """``result`` with the data report of its question-answer pairs (and the user's), also saved in the run."""
    if "qa" in result.rows or "user" in result.rows:
        result.report = data_report(result.rows.get("qa", []), result.rows.get("user", []), passages)
        run.write_data_report(result.report)
    return result


def _add_user_questions(
    run: RunDir, config: AugmentConfig, documents: list[dict], result: Augmentation, progress: Progress
) -> None:
    """The user's own pairs join the augmentation as the kind ``user``: read again from ``config.questions`` when
    every file is there (and kept in the run), else the run's copy."""
    if config.questions and all(Path(q).is_file() for q in config.questions):
        rows = read_questions(config.questions, documents)
        run.write_user_questions(rows)
        warned = sum(bool(r["warning"]) for r in rows)
        note = f", {warned} with an answer the pages do not support" if warned else ""
        progress.log(f"augment: {len(rows)} question-answer pairs of your own{note}")
    elif config.questions:
        gone = [q for q in config.questions if not Path(q).is_file()]
        progress.log(f"augment: {', '.join(gone)} not found: the run's copy of your questions is used")
    rows = user_rows(run)
    if rows:
        result.rows["user"] = rows
        result.keys["user"] = f"user-{digest([[r['question'], r['answer']] for r in rows])}"


def _generate(
    kind: str,
    passages: list[Passage],
    generator: ChatGenerator,
    base: LocalGenerator | None,
    config: AugmentConfig,
    progress: Progress,
) -> list[dict[str, Any]]:
    """The rows of one kind (none when its setting asks for none)."""
    if kind == "paraphrase":
        return generate_paraphrases(passages, generator, config, progress) if config.paraphrases_per_passage else []
    if kind == "qa":
        return generate_qa(passages, generator, config, progress)
    return generate_replay(base, config, progress) if config.replay_prompts else []


def _load_base(model_cfg: ModelConfig, config: AugmentConfig, progress: Progress) -> LocalGenerator:
    from ..models.loading import load_model, load_tokenizer, resolve_model

    progress.start("augment: load model", total=None)
    resolved = resolve_model(model_cfg.model, model_cfg.revision, progress)
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved).eval()
    progress.finish()
    return LocalGenerator(model, tokenizer, config.augment_batch_size, progress)
