"""A verb's settings, resolved once for both faces: which sections each verb takes, and the config objects that the
values a face was given make.

The terminal face gives the options typed on the command line (and a ``--config`` file); the web face gives its
form's values, keyed by field name (``form_sections`` splits and coerces them). Either way ``resolve_configs``
builds the verb's config objects by the same rules: a file's values, then the values given; a preset's values for
what it sets; for ``train`` and ``ablate`` the blocks to train on (``training_blocks``) and the run's augmentation.
What the run saved comes in as data (``saved``: its ``config.yaml`` sections), so the faces read the run.
"""

from __future__ import annotations

from typing import Any

from .declare import ConfigError
from .fields import coerce, describe_fields, from_dict
from .presets import DEFAULT_PRESET, PRESET_FIELDS, PRESETS
from .services import ChatConfig, ExportConfig, PublishConfig, ServeConfig
from .stages import SECTIONS, AugmentConfig, BlocksConfig, GenerationConfig, ModelConfig
from .training import TrainConfig


def _sections(*names: str) -> dict[str, type]:
    return {name: SECTIONS[name] for name in names}


_TRAINING = _sections("train", "blocks", "augment", "eval", "generation")
# The config sections each verb takes, in the order its option groups are shown.
VERB_SECTIONS: dict[str, dict[str, type]] = {
    "model": _sections("model"),
    "prepare": _sections("inputs", "model", "fetch", "corpus", "blocks", "augment"),
    "augment": _sections("augment"),
    "train": _TRAINING,
    "ablate": _TRAINING,
    "merge": {},
    "ask": _sections("generation"),
    "serve": {"model": ModelConfig, "serve": ServeConfig, "generation": GenerationConfig},
    "chat": {"chat": ChatConfig, "generation": GenerationConfig},
    "eval": _sections("eval", "generation"),
    "push": {"publish": PublishConfig},
    "export": {"export": ExportConfig, "generation": GenerationConfig},
}
# The verbs whose settings start from what the run saved (its packed blocks, its augmentation).
READS_THE_RUN = ("train", "ablate", "augment")


def training_blocks(prepared: dict[str, Any] | None, preset: str, given: dict[str, Any] | None = None) -> BlocksConfig:
    """The blocks a training asks for: what the run was packed with, then the preset's values, then ``given``."""
    values = dict(prepared or {})  # keys older versions wrote are dropped by from_dict
    values.update(PRESETS[preset].get("blocks", {}))
    values.update(given or {})
    return from_dict(BlocksConfig, values, "blocks")


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


def form_sections(verb: str, values: dict[str, Any], shown_preset: str | None = None) -> dict[str, dict[str, Any]]:
    """A form's values (keyed by field name, as its controls hold them: numbers as floats, lists as lines, blanks as
    "") as the values given to each of ``verb``'s sections, each coerced to its field's type (ConfigError naming
    the field whose value does not fit). ``shown_preset``: the preset whose values the form shows (see
    ``preset_settings``)."""
    if shown_preset is not None:
        values = preset_settings(values, shown_preset)
    given = {}
    for section, cls in VERB_SECTIONS[verb].items():
        infos = {i.name: i for i in describe_fields(cls)}
        given[section] = {k: coerce(infos[k], v) for k, v in values.items() if k in infos}
    return given


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
    saved: dict[str, Any] | None = None,
    resume: bool = False,
    extra_urls: list[str] = (),
    endpoint: str | None = None,
) -> dict[str, Any]:
    """The config objects of ``verb`` by section, from the values given and a config file (``section_values``).

    ``saved``: the run's config.yaml sections, which the verbs of ``READS_THE_RUN`` start from. ``extra_urls`` (e.g.
    a URL list file's) join the inputs of ``prepare``; ``endpoint`` (the environment's chat server) replaces the
    chat endpoint's default when none is given. For ``train`` the blocks are those to train on: what the run was
    packed with, then the preset's, then the values given (None with ``resume``, which continues the run's saved
    configuration); the augmentation is the run's, then the values given.
    """
    values = section_values(verb, given, from_file)
    if verb == "prepare":
        values["inputs"]["urls"] = [*values["inputs"].get("urls", []), *extra_urls]
    if verb == "chat" and endpoint and "endpoint" not in given.get("chat", {}):
        values["chat"]["endpoint"] = endpoint
    configs = {
        name: from_dict(cls, values[name], name)
        for name, cls in VERB_SECTIONS[verb].items()
        if not (verb in ("train", "ablate") and name == "blocks")
    }
    if verb in READS_THE_RUN:
        saved = saved if saved is not None else {}
        # The augmentation the run was trained (or augmented) with, then the values given (as for the blocks).
        configs["augment"] = from_dict(AugmentConfig, {**(saved.get("augment") or {}), **values["augment"]}, "augment")
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
            configs["blocks"] = training_blocks(saved.get("blocks"), configs["train"].preset, values["blocks"])
    return configs
