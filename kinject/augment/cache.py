"""The cache key of generated data: each kind is saved under a digest of what it depends on, so trainings and
ablations that need the same data generate it once, and a changed setting regenerates only the kinds it affects."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..settings.stages import AugmentConfig
from .generators import LocalGenerator
from .prompts import REPLAY_PROMPTS

KINDS = ("paraphrase", "qa", "replay")
AUGMENT_VERSION = 2  # bump when generation or filtering changes, so cached sets are generated again
KIND_VERSION = {"paraphrase": 3, "qa": 48, "replay": 3}  # the same, for one kind
ANSWER_FILTER_VERSION = 3  # the same, for question-answer sets whose answers the generator wrote
TEMPLATE_VERSION = (
    3  # the same, for question-answer sets with template questions (3: a short subject, never a headline)
)

# The settings each kind depends on (changing another setting does not generate it again).
KIND_FIELDS = {
    "paraphrase": (
        "paraphrases_per_passage",
        "generator",
        "generator_model",
        "augment_temperature",
        "augment_max_new_tokens",
        "augment_seed",
    ),
    "qa": (
        "sentence_questions",
        "rewrites",
        "rewrites_per_fact",
        "questions_per_fact",
        "round_trip",
        "kept_per_fact",
        "template_questions",
        "answers",
        "generator",
        "generator_model",
        "augment_temperature",
        "augment_max_new_tokens",
        "augment_seed",
    ),
    "replay": ("replay_prompts", "augment_max_new_tokens"),
}


def digest(value: Any) -> str:
    """A short stable digest of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]


def augmentation_key(
    kind: str, config: AugmentConfig, corpus_digest: str, model: str, base: str = "full precision"
) -> str:
    """The cache name of one kind: the kind, then a digest of its settings, the corpus (not for replay), the base
    model (name and revision in ``model``; ``base``: how it was loaded, as a 4-bit model writes other text than a
    16-bit one) and, for replay, the shipped prompts."""
    settings = {k: getattr(config, k) for k in KIND_FIELDS[kind]}
    version = [AUGMENT_VERSION, KIND_VERSION[kind]]
    if kind == "qa" and config.answers in ("generator", "distill"):
        version.append(ANSWER_FILTER_VERSION)
    if kind == "qa" and config.template_questions:
        version.append(TEMPLATE_VERSION)
    extra = digest(REPLAY_PROMPTS.read_text(encoding="utf-8")) if kind == "replay" else ""
    uses_base = kind == "replay" or config.generator == "base"
    pages = "" if kind == "replay" else corpus_digest  # replay answers general prompts: the same for every run
    return f"{kind}-{digest([*version, kind, settings, pages, model, base if uses_base else '', extra])}"


REPLAY_DIR: Path | None = None  # where shared replay answers live (None: $KINJECT_HOME/replay)


def shared_replay(key: str) -> Path:
    """Where replay answers are kept for every run of this machine (they depend on the model, not the pages)."""
    from ..settings.places import kinject_home

    return (REPLAY_DIR or kinject_home() / "replay") / f"{key}.jsonl"


def loaded_as(generator: LocalGenerator | None) -> str:
    """How a local generator's model is loaded, for the cache key (None: the full-precision model the verb loads)."""
    if generator is None:
        return "full precision"
    model = generator.model
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False):
        return "4-bit"
    return "full precision"
