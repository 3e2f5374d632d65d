"""How a setting is declared and checked: ``setting`` (a documented dataclass field, from which the CLI option and the
app's control are built), ``ConfigError`` and the checks every settings dataclass's ``__post_init__`` uses. The
dataclasses themselves are in ``kinject.settings.stages`` (a run's stages; training's in
``kinject.settings.training``), their choices in ``kinject.settings.choices``, and ``kinject.settings.services`` (the
rest).
"""

from __future__ import annotations

import ipaddress
import typing
from dataclasses import field
from typing import Any

from ..runtime.errors import KinjectError

SEED_LIMIT = 2**32  # numpy's generators (which transformers' set_seed seeds too) take seeds below 2**32


def setting(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - "help" mirrors argparse
    """A documented field. ``metadata`` goes to argparse as is (e.g. ``aliases=["--lr"]``)."""
    meta = {"help": help, **metadata}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(KinjectError, ValueError):
    """A configuration value is invalid; the message names the field."""


def require(cond: bool, field_name: str, message: str) -> None:
    """Raise ConfigError naming ``field_name`` unless ``cond`` holds (the validation of every ``__post_init__``)."""
    if not cond:
        raise ConfigError(f"{field_name}: {message}")


def check_seed(field_name: str, seed: int) -> None:
    """Refuse a seed that numpy's generators cannot take."""
    require(0 <= seed < SEED_LIMIT, field_name, f"must be within 0..{SEED_LIMIT - 1}, got {seed}")


def check_choice(value: Any, field_name: str, kind: Any) -> None:
    """Refuse a value that is not one of the ``Literal`` type ``kind``'s choices."""
    choices = typing.get_args(kind)
    require(value in choices, field_name, f"must be one of {', '.join(choices)}, got {value!r}")


def check_networks(field_name: str, networks: list[str]) -> None:
    """Refuse an entry of ``networks`` that is not a CIDR range, naming the field."""
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ConfigError(f"{field_name}: {net!r} is not a CIDR range ({exc})") from None
