"""The verbs both faces call: which settings each verb takes, and the command line that gives a job's settings.

The terminal face (``kinject.cli``) and the web face (``kinject.web``) both build the config dataclasses of
``kinject.config`` and run the stages through this layer; neither imports the other.
"""

from __future__ import annotations

import errno
from pathlib import Path

from .config import (
    DEFAULT_PRESET,
    AugmentConfig,
    BlocksConfig,
    ChatConfig,
    CorpusConfig,
    EvalConfig,
    FetchConfig,
    GenerationConfig,
    InputsConfig,
    ModelConfig,
    PrepareConfig,
    PublishConfig,
    ServeConfig,
    TrainConfig,
    equivalent_command,
    from_dict,
    training_blocks,
)
from .runs import RunDir

# The config sections each verb takes, in the order its option groups are shown.
VERB_SECTIONS: dict[str, dict[str, type]] = {
    "model": {"model": ModelConfig},
    "prepare": {
        "inputs": InputsConfig,
        "model": ModelConfig,
        "fetch": FetchConfig,
        "corpus": CorpusConfig,
        "blocks": BlocksConfig,
    },
    "augment": {"augment": AugmentConfig},
    "train": {
        "train": TrainConfig,
        "blocks": BlocksConfig,
        "augment": AugmentConfig,
        "eval": EvalConfig,
        "generation": GenerationConfig,
    },
    "ablate": {
        "train": TrainConfig,
        "blocks": BlocksConfig,
        "augment": AugmentConfig,
        "eval": EvalConfig,
        "generation": GenerationConfig,
    },
    "merge": {},
    "ask": {"generation": GenerationConfig},
    "serve": {"model": ModelConfig, "serve": ServeConfig, "generation": GenerationConfig},
    "chat": {"chat": ChatConfig, "generation": GenerationConfig},
    "eval": {"eval": EvalConfig, "generation": GenerationConfig},
    "push": {"publish": PublishConfig},
}


def prepare_command(config: PrepareConfig, out: str | Path, force: bool = False) -> str:
    """The ``prepare`` command line that gives ``config`` (only the settings that differ from the defaults)."""
    pairs = [(getattr(config, name), cls()) for name, cls in VERB_SECTIONS["prepare"].items()]
    return equivalent_command("prepare", [], pairs, ["--out", str(out), *(["--force"] if force else [])])


def train_command(
    run_dir: str | Path,
    config: TrainConfig,
    blocks: BlocksConfig | None = None,
    resume: bool = False,
    evaluation: EvalConfig | None = None,
    generation: GenerationConfig | None = None,
    augment: AugmentConfig | None = None,
) -> str:
    """The ``train`` command line that gives ``config``, ``blocks`` and ``augment`` on this run (the preset, then
    only the settings that differ from what the preset and the run give)."""
    evaluated = [(evaluation or EvalConfig(), EvalConfig()), (generation or GenerationConfig(), GenerationConfig())]
    if resume:  # the run's saved configuration; only the evaluation afterwards can be chosen
        extra = ["--resume", *(["--eval-at-end"] if config.eval_at_end else [])]
        return equivalent_command("train", [str(run_dir)], evaluated if config.eval_at_end else [], extra)
    lead = [] if config.preset == DEFAULT_PRESET else ["--preset", config.preset]
    pairs = [(config, TrainConfig(preset=config.preset))]
    run = RunDir(run_dir)
    if blocks is not None:
        pairs.append((blocks, training_blocks(run.section("blocks"), config.preset)))
    if augment is not None:
        pairs.append((augment, from_dict(AugmentConfig, run.section("augment"), "augment")))
    if config.eval_at_end:
        pairs += evaluated
    return equivalent_command("train", [str(run_dir), *lead], pairs)


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file or system operation: what went wrong, on which file, and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"disk full{where}: free some space and run the command again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: choose a folder you can write to, or fix its permissions"
    if exc.errno == errno.EROFS:
        return f"read-only file system{where}: choose a folder on a writable disk"
    return f"{exc.strerror or type(exc).__name__}{where}" if exc.strerror else f"{type(exc).__name__}: {exc}"
