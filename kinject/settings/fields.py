"""What the config dataclasses' fields are, and how values travel in and out of them.

Introspection (``describe_fields``: the kind, default and help of each field, from which the CLI's options and the
app's controls are generated), reading and writing a run's ``config.yaml`` sections (``to_dict``, ``from_dict``,
``check_types``) and form values coerced to a field's type (``coerce``, ``build``). The declarations themselves are
``kinject.settings.stages``'s and ``kinject.settings.services``'s; a verb's settings are resolved in
``kinject.settings.resolve``, and rendered as a command line in ``kinject.settings.commands``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from .declare import ConfigError

# Keys earlier versions wrote into config.yaml; read back without complaint, then dropped.
_LEGACY_KEYS = {
    "blocks": {"block_size_used"},
    "train": {"block_size", "text_format"},
    "eval": {"generation"},
    "augment": {"cloze_questions"},  # sentence_questions asks every fact with its own sentence's questions
}


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain data (for YAML/JSON)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type, data: dict[str, Any] | None, section: str | None = None) -> Any:
    """Build ``cls`` from a mapping, naming any unknown key (a typo in config.yaml must not pass silently).

    ``section`` (the config.yaml section it came from) lets keys that earlier versions wrote there pass.
    """
    data = dict(data or {})
    for key in _LEGACY_KEYS.get(section or "", ()):
        data.pop(key, None)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{section or cls.__name__}: unknown field(s) {', '.join(unknown)}")
    check_types(cls, data, section)
    try:
        return cls(**data)
    except TypeError as exc:  # a value of the wrong shape, e.g. a list where a number belongs
        raise ConfigError(f"{section or cls.__name__}: {exc}") from None


_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "list": "a list"}


def _has_kind(value: Any, kind: str) -> bool:
    """Whether ``value`` fits a field of ``kind`` (an integral float passes as an integer; a bool only as a bool)."""
    if isinstance(value, bool) or kind == "bool":
        return isinstance(value, bool) and kind == "bool"
    if kind == "int":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "float":
        return isinstance(value, (int, float))
    return isinstance(value, (list, tuple))


def check_types(cls: type, data: dict[str, Any], section: str | None = None) -> None:
    """Refuse a value whose type is not its field's (``lora_r: abc`` in a config.yaml), naming the field, before
    ``__post_init__`` would fail on it with Python's own words ("'>=' not supported between ...")."""
    infos = {i.name: i for i in describe_fields(cls)}
    for name, value in data.items():
        info = infos.get(name)
        if info is None or info.kind not in _KIND_WORDS or (value is None and info.optional):
            continue
        if not _has_kind(value, info.kind):
            raise ConfigError(f"{section or cls.__name__}: {name} must be {_KIND_WORDS[info.kind]}, got {value!r}")


@dataclass
class FieldInfo:
    """What a form or a command line needs to know about one field."""

    name: str
    kind: str  # bool | int | float | str | choice | list
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is a valid value (unset: a preset's or a computed value)
    aliases: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def describe_fields(cls: type) -> list[FieldInfo]:
    """Every init field of a stage dataclass, with its kind, default and help, in declaration order."""
    hints = typing.get_type_hints(cls)
    infos = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind_type, optional = hints[f.name], False
        args = typing.get_args(kind_type)
        if type(None) in args:
            optional = True
            kind_type = next(a for a in args if a is not type(None))
        if typing.get_origin(kind_type) is Literal:
            kind, choices = "choice", tuple(typing.get_args(kind_type))
        elif typing.get_origin(kind_type) is list:
            kind, choices = "list", ()
        else:
            kind, choices = kind_type.__name__, ()
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        aliases = f.metadata.get("aliases", ())
        infos.append(
            FieldInfo(
                f.name,
                kind,
                default,
                f.metadata.get("help", ""),
                choices,
                optional,
                tuple([aliases] if isinstance(aliases, str) else aliases),
            )
        )
    return infos


def field_help(cls: type, name: str) -> str:
    """The documented help text of one field (used for CLI and UI help)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


def coerce(info: FieldInfo, value: Any) -> Any:
    """A value from a form (numbers arrive as floats, lists as text, blanks as "") as the field's type.

    A blank optional field is None (the preset's or the computed value); a blank required one keeps its default.
    """
    if value is None or (isinstance(value, str) and not value.strip() and info.kind != "list"):
        return None if info.optional else info.default
    try:
        if info.kind == "int":
            number = float(value)
            if number != int(number):
                raise ValueError(f"{value} is not a whole number")
            return int(number)
        if info.kind == "float":
            return float(value)
        if info.kind == "bool":
            return bool(value)
        if info.kind == "list":  # a list, or text with one item a line ('#' lines are comments)
            items = value if isinstance(value, (list, tuple)) else str(value).splitlines()
            return [str(v).strip() for v in items if str(v).strip() and not str(v).strip().startswith("#")]
        return str(value).strip() if isinstance(value, str) else value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{info.name}: {exc}") from None


def build(cls: type, values: dict[str, Any], section: str | None = None) -> Any:
    """``cls`` from form values keyed by field name (unknown names refused, missing ones default)."""
    infos = {i.name: i for i in describe_fields(cls)}
    unknown = sorted(set(values) - set(infos))
    if unknown:
        raise ConfigError(f"{section or cls.__name__}: unknown field(s) {', '.join(unknown)}")
    return from_dict(cls, {k: coerce(infos[k], v) for k, v in values.items()}, section)
