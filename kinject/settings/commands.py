"""The command line that gives a configuration: what the app shows as a job's CLI equivalent, and the arguments the
app's training on several processes starts ``kinject train`` with (as tokens, never a shell string parsed again).

Only the fields that differ from what the command would get without options are written, each as its option.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .fields import FieldInfo, describe_fields, from_dict
from .presets import DEFAULT_PRESET
from .resolve import VERB_SECTIONS, training_blocks
from .stages import AugmentConfig, BlocksConfig, EvalConfig, GenerationConfig, PrepareConfig
from .training import TrainConfig

PROGRAM = ("python", "-m", "kinject")


def _flag_tokens(info: FieldInfo, value: Any) -> list[str]:
    if info.kind == "bool":  # the parser has a --no- form only for a field whose default is true
        if value:
            return [info.option]
        return ["--no-" + info.name.replace("_", "-")] if info.default is True else [info.option, "false"]
    if info.kind == "list":
        return [info.option, *map(str, value)] if value else []
    return [info.option, f"{value:g}" if isinstance(value, float) else str(value)]


def option_tokens(config: Any, baseline: Any) -> list[str]:
    """The options that turn ``baseline`` into ``config`` (two instances of one stage dataclass)."""
    tokens: list[str] = []
    for info in describe_fields(type(config)):
        value = getattr(config, info.name)
        if value != getattr(baseline, info.name) and value is not None:
            tokens += _flag_tokens(info, value)
    return tokens


def equivalent_argv(
    verb: str, positional: list[str], configs: list[tuple[Any, Any]], extra: list[str] = ()
) -> list[str]:
    """The arguments of ``kinject VERB ...`` for ``configs`` as (config, what the CLI gives without options)
    pairs: only the fields that differ."""
    tokens = [verb, *positional]
    for config, baseline in configs:
        tokens += option_tokens(config, baseline)
    return [*tokens, *extra]


def equivalent_command(verb: str, positional: list[str], configs: list[tuple[Any, Any]], extra: list[str] = ()) -> str:
    """A pasteable ``python -m kinject VERB ...`` (see ``equivalent_argv``), each token shell-quoted."""
    return shlex.join([*PROGRAM, *equivalent_argv(verb, positional, configs, extra)])


def prepare_command(config: PrepareConfig, out: str | Path, force: bool = False) -> str:
    """The ``prepare`` command line that gives ``config`` (only the settings that differ from the defaults)."""
    pairs = [(getattr(config, name), cls()) for name, cls in VERB_SECTIONS["prepare"].items()]
    return equivalent_command("prepare", [], pairs, ["--out", str(out), *(["--force"] if force else [])])


def train_argv(
    run_dir: str | Path,
    config: TrainConfig,
    blocks: BlocksConfig | None = None,
    resume: bool = False,
    evaluation: EvalConfig | None = None,
    generation: GenerationConfig | None = None,
    augment: AugmentConfig | None = None,
    saved: dict[str, Any] | None = None,
) -> list[str]:
    """The arguments of ``kinject train`` that give ``config``, ``blocks`` and ``augment`` on the run whose
    config.yaml sections are ``saved`` (the preset, then only the settings that differ from what the preset and
    the run give)."""
    saved = saved or {}
    evaluated = [(evaluation or EvalConfig(), EvalConfig()), (generation or GenerationConfig(), GenerationConfig())]
    if resume:  # the run's saved configuration; only the evaluation afterwards can be chosen
        extra = ["--resume", *(["--eval-at-end"] if config.eval_at_end else [])]
        return equivalent_argv("train", [str(run_dir)], evaluated if config.eval_at_end else [], extra)
    lead = [] if config.preset == DEFAULT_PRESET else ["--preset", config.preset]
    pairs = [(config, TrainConfig(preset=config.preset))]
    if blocks is not None:
        pairs.append((blocks, training_blocks(saved.get("blocks"), config.preset)))
    if augment is not None:
        pairs.append((augment, from_dict(AugmentConfig, saved.get("augment"), "augment")))
    if config.eval_at_end:
        pairs += evaluated
    return equivalent_argv("train", [str(run_dir), *lead], pairs)


def train_command(*args: Any, **kwargs: Any) -> str:
    """``train_argv``'s arguments as a pasteable ``python -m kinject train ...`` line."""
    return shlex.join([*PROGRAM, *train_argv(*args, **kwargs)])
