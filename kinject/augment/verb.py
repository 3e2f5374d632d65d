"""The ``augment`` verb: the run's generated data of the kinds asked for, from the cache or generated and saved."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import AugmentConfig, ModelConfig
from ..fields import from_dict, to_dict
from ..progress import Progress
from ..runs import RunDir
from .cache import KINDS, augmentation_key, digest, loaded_as
from .generation import generate_paraphrases, generate_qa, generate_replay, teacher_answers
from .generators import ChatGenerator, EndpointGenerator, LocalGenerator
from .passages import Passage, split_passages


@dataclass
class Augmentation:
    """The generated rows of each kind asked for, and what making them cost."""

    rows: dict[str, list[dict[str, Any]]]
    keys: dict[str, str]
    seconds: dict[str, float]
    generated: list[str]  # the kinds generated now (the others came from the cache)

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
    result = Augmentation({}, wanted, {}, [])
    missing = []
    for kind, key in wanted.items():
        cached = run.load_augmentation(key)
        if cached is None:
            missing.append(kind)
        else:
            result.rows[kind], info = cached
            result.seconds[kind] = info.get("seconds", 0.0)
    if not missing:
        return result
    passages = split_passages(documents)
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
        teacher = f" ({taught} answers written by the generator)" if taught is not None else ""
        progress.log(f"augment: {kind}: kept {kept} of {len(rows)} in {seconds:.0f} s{teacher}")
        result.rows[kind], result.seconds[kind] = rows, seconds
        result.generated.append(kind)
    return result


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
    from ..models import load_model, load_tokenizer, resolve_model

    progress.start("augment: load model", total=None)
    resolved = resolve_model(model_cfg.model, model_cfg.revision, progress)
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved).eval()
    progress.finish()
    return LocalGenerator(model, tokenizer, config.augment_batch_size, progress)
