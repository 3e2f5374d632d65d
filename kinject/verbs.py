"""The verbs both faces call: which settings each verb takes, and the command line that gives a job's settings.

The terminal face (``kinject.cli``) and the web face (``kinject.web``) both build the config dataclasses of
``kinject.config`` and run the stages through this layer; neither imports the other.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from .config import (
    AugmentConfig,
    BlocksConfig,
    ConfigError,
    CorpusConfig,
    EvalConfig,
    FetchConfig,
    GenerationConfig,
    InputsConfig,
    ModelConfig,
    PrepareConfig,
    TrainConfig,
)
from .fields import build, describe_fields, equivalent_command, from_dict, training_blocks
from .presets import DEFAULT_PRESET, PRESET_FIELDS
from .runs import RunDir
from .settings import ChatConfig, PublishConfig, ServeConfig

# The config sections each verb takes, in the order its option groups are shown.
VERB_SECTIONS: dict[str, dict[str, type]] = {
    "model": {"model": ModelConfig},
    "prepare": {
        "inputs": InputsConfig,
        "model": ModelConfig,
        "fetch": FetchConfig,
        "corpus": CorpusConfig,
        "blocks": BlocksConfig,
        "augment": AugmentConfig,
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


def section_values(
    verb: str, given: dict[str, dict[str, Any]], from_file: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Each section's values for ``verb``: a config file's (``from_file``, sections of a config.yaml), then the
    values ``given`` explicitly (by section).

    An explicit ``preset`` re-chooses what the preset sets, so the file's values of those fields give way.
    """
    from_file = from_file or {}
    given = {name: given.get(name, {}) for name in VERB_SECTIONS[verb]}
    values = {name: {**from_file.get(name, {}), **given[name]} for name in given}
    if "preset" in given.get("train", {}):
        for name in ("train", "blocks"):
            for key in PRESET_FIELDS[name]:
                if key not in given[name]:
                    values[name].pop(key, None)
    return values


def resolve_configs(
    verb: str,
    given: dict[str, dict[str, Any]],
    from_file: dict[str, dict[str, Any]] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    extra_urls: list[str] = (),
) -> dict[str, Any]:
    """The config objects of ``verb`` by section, from the values given and a config file (``section_values``).

    ``extra_urls`` (e.g. a URL list file's) join the inputs of ``prepare``. For ``train`` the blocks are those to
    train on: what the run was packed with, then the preset's, then the values given (None with ``resume``, which
    continues the run's saved configuration); the augmentation is the run's, then the values given.
    """
    values = section_values(verb, given, from_file)
    if verb == "prepare":
        values["inputs"]["urls"] = [*values["inputs"].get("urls", []), *extra_urls]
    configs = {
        name: from_dict(cls, values[name], name)
        for name, cls in VERB_SECTIONS[verb].items()
        if not (verb in ("train", "ablate") and name == "blocks")
    }
    if verb in ("train", "ablate", "augment"):
        run = RunDir(run_dir).require()
        # The augmentation the run was trained (or augmented) with, then the values given (as for the blocks).
        configs["augment"] = from_dict(AugmentConfig, {**run.section("augment"), **values["augment"]}, "augment")
    if verb in ("train", "ablate"):
        if resume:
            changed = sorted({*given.get("train", {}), *values["blocks"]} - {"eval_at_end"})
            if changed:
                raise ConfigError(
                    f"--resume continues the run's saved configuration; leave out {', '.join(changed)} "
                    "(or train afresh without --resume)"
                )
            configs["blocks"] = None
        else:
            configs["blocks"] = training_blocks(run.section("blocks"), configs["train"].preset, values["blocks"])
    return configs


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


def settings_configs(verb: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Each config section of ``verb`` built from flat settings keyed by field name (a form's values, say).

    Raises ConfigError naming the field whose value does not fit."""
    configs = {}
    for section, cls in VERB_SECTIONS[verb].items():
        names = {i.name for i in describe_fields(cls)}
        configs[section] = build(cls, {k: v for k, v in settings.items() if k in names}, section)
    return configs


def preset_values(preset: str) -> list[Any]:
    """The values a preset gives its fields, in the order of ``PRESET_FIELDS`` (train, then blocks)."""
    train, blocks = TrainConfig(preset=preset), training_blocks(None, preset)
    return [getattr(train, k) for k in PRESET_FIELDS["train"]] + [getattr(blocks, k) for k in PRESET_FIELDS["blocks"]]


def preset_settings(settings: dict[str, Any], shown: str | None) -> dict[str, Any]:
    """Settings with the chosen preset's values where a field still shows another preset's value.

    A form that shows the values of preset ``shown`` sends them for the fields nobody set: they mean "not set",
    and the chosen preset (``settings["preset"]``) fills them. When ``shown`` is the chosen preset, nothing
    changes: what the user then set is theirs."""
    preset, shown = settings.get("preset") or DEFAULT_PRESET, shown or DEFAULT_PRESET
    if preset == shown:
        return settings
    names = PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"]
    showing = dict(zip(names, preset_values(shown), strict=True))
    chosen = dict(zip(names, preset_values(preset), strict=True))
    return {k: chosen[k] if k in showing and v == showing[k] else v for k, v in settings.items()}
