"""Forms from the config dataclasses: one control per field, named after it, its help as the control's info."""

from __future__ import annotations

import inspect
from typing import Any

import gradio as gr

from kinject.runs import RunDir
from kinject.settings.fields import FieldInfo, describe_fields
from kinject.settings.presets import DEFAULT_PRESET, PRESET_FIELDS
from kinject.settings.resolve import READS_THE_RUN, VERB_SECTIONS, form_sections, preset_values, resolve_configs
from kinject.settings.stages import AugmentConfig, BlocksConfig, EvalConfig
from kinject.settings.training import TrainConfig

_UNSET = object()

PREPARE_ROWS = [["model", "block_size"]]
# Of the augmentation's settings the Prepare tab takes only the user's own question file; the Train form has the rest.
PREPARE_LEAVE_OUT = tuple(i.name for i in describe_fields(AugmentConfig) if i.name != "questions")
TRAIN_ROWS = [
    ["preset", "quantization", "eval_at_end", "quick"],
    ["epochs", "learning_rate", "lora_r", "lora_alpha", "batch_size", "text_format"],
]
# The Train form: training, its blocks and augmentation, and the evaluation "Eval at end" runs.
TRAIN_SECTIONS = {"train": TrainConfig, "blocks": BlocksConfig, "augment": AugmentConfig, "eval": EvalConfig}
TRAIN_FIELDS = [name for row in TRAIN_ROWS for name in row] + [
    i.name
    for cls in TRAIN_SECTIONS.values()
    for i in describe_fields(cls)
    if not any(i.name in row for row in TRAIN_ROWS)
]
# Where the app's defaults differ from the CLI's: evaluate when training ends, on the quick set on a CPU.
APP_DEFAULTS = {"eval_at_end": True, "quick": "auto"}
EVAL_ROWS = [["probes", "auto_probes", "max_new_tokens", "quick"]]
ASK_ROWS = [["max_new_tokens"]]
CHAT_ROWS = [["max_new_tokens", "temperature", "top_p"]]
PUBLISH_ROWS = [["repo", "merged"]]
EXPORT_ROWS = [["what", "types", "name"]]


def field_input(info: FieldInfo, value: Any = _UNSET) -> gr.Component:
    """The control for one config field: its help is the control's info text."""
    value = info.default if value is _UNSET else value
    kw: dict[str, Any] = {"label": info.name.replace("_", " ").capitalize(), "info": info.help}
    if info.kind == "bool":
        return gr.Checkbox(value=bool(value), **kw)
    if info.kind == "choice":
        return gr.Dropdown(choices=list(info.choices), value=value, **kw)
    if info.kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if info.kind == "int" else None, **kw)
    if info.kind == "list":
        return gr.Textbox(value="\n".join(value or []), lines=2, placeholder="one per line", **kw)
    return gr.Textbox(value=value if value is not None else "", **kw)


def settings_form(
    sections: dict[str, type],
    rows: list[list[str]],
    values: dict[str, Any] | None = None,
    made: dict[str, Any] | None = None,
    leave_out: tuple[str, ...] = (),
) -> dict[str, gr.Component]:
    """Controls for every field of ``sections``: the ``rows`` named first, the rest in "Advanced settings".

    ``values`` override defaults; ``made`` builds a custom control for a field (an upload box, say).
    """
    infos = {i.name: i for cls in sections.values() for i in describe_fields(cls)}
    values, made = values or {}, made or {}
    form: dict[str, gr.Component] = {}

    def add(name: str) -> None:
        form[name] = made[name]() if name in made else field_input(infos[name], values.get(name, _UNSET))

    for row in rows:
        with gr.Row():
            for name in row:
                add(name)
    rest = [name for name in infos if name not in form and name not in leave_out]
    if rest:
        with gr.Accordion("Advanced settings", open=False):
            for start in range(0, len(rest), 3):
                with gr.Row():
                    for name in rest[start : start + 3]:
                        add(name)
    return form


def takes_fields(verb: str, leave_out: tuple[str, ...] = ()):
    """Declare that a handler takes ``verb``'s config fields as keyword arguments (its ``**settings``).

    Gradio reads a handler's signature to name its API parameters: declared with a default, a field the client
    leaves out is sent as the control's value (or None, which means the field's default), not refused. Fields in
    ``leave_out`` are no parameter at all (the operator's settings): an API call naming one is refused.
    """

    def declare(fn):
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [
            inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=None)
            for cls in VERB_SECTIONS[verb].values()
            for info in describe_fields(cls)
            if info.name not in leave_out
        ]
        fn.__signature__ = signature.replace(parameters=params)
        return fn

    return declare


def apply_preset(preset: str) -> list[Any]:
    """The preset's values for the form's fields, and the preset they now show (the form's ``shown_preset``)."""
    return [*preset_values(preset), preset]


def form_defaults() -> dict[str, Any]:
    """What the Train form shows before a run is chosen: the default preset's values and the app's defaults."""
    values = {i.name: i.default for cls in TRAIN_SECTIONS.values() for i in describe_fields(cls)}
    values.update(zip(PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"], preset_values(DEFAULT_PRESET), strict=True))
    return {**values, **APP_DEFAULTS}


def form_value(info: FieldInfo, value: Any) -> Any:
    """A config value as its control holds it (lists as lines, unset text as blank)."""
    if info.kind == "list":
        return "\n".join(value or [])
    if info.kind not in ("int", "float", "bool") and value is None:
        return ""
    return value


def train_form_values(values: dict[str, Any]) -> list[Any]:
    """The Train form's controls' values (in ``TRAIN_FIELDS`` order) for config values keyed by field name."""
    infos = {i.name: i for cls in TRAIN_SECTIONS.values() for i in describe_fields(cls)}
    return [form_value(infos[name], values[name]) for name in TRAIN_FIELDS]


def form_configs(
    verb: str,
    settings: dict[str, Any],
    run: RunDir | None = None,
    shown_preset: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """The config objects of ``verb`` from a form's values, resolved as the CLI resolves its options
    (``kinject.settings.resolve``); ConfigError naming a field whose value does not fit.

    ``run``: the run a training or augmentation starts from (its saved settings). ``shown_preset``: the preset whose
    values the form shows. A form sends every field, so on ``resume`` only its "Eval at end" of the training's
    fields counts: the rest is the run's saved configuration (the CLI refuses them given)."""
    given = form_sections(verb, settings, shown_preset)
    if resume:
        given["train"] = {k: v for k, v in given["train"].items() if k == "eval_at_end"}
        given["blocks"] = {}
    saved = run.require().read_config() if verb in READS_THE_RUN and run is not None else None
    return resolve_configs(verb, given, saved=saved, resume=resume)
