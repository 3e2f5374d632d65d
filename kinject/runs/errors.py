"""The errors of a run folder: missing or incomplete, busy, holding a damaged file or a damaged adapter."""

from __future__ import annotations

from pathlib import Path

from ..settings.declare import ConfigError
from ..runtime.errors import BusyError, KinjectError


class RunError(KinjectError, RuntimeError):
    """A run folder is missing, incomplete or would be overwritten."""


class RunBusyError(RunError, BusyError):
    """Another process (or job) is training this run."""


class AdapterDamagedError(RunError):
    """The adapter's weights file cannot be read (cut off by a crash or a full disk, or empty)."""


class RunDamagedError(RunError, ValueError):
    """A file of the run cannot be used: it does not parse, or a value in it has the wrong shape or type.

    ``path`` is the file, ``field`` where in it ("" for the file as a whole, ``base.knowledge_accuracy``,
    ``line 3: step``) and ``detail`` what is wrong there; the message names all three. A ValueError too, as a
    damaged JSON file always was to its readers."""

    def __init__(self, message: str, path: Path, field: str = "", detail: str = ""):
        super().__init__(message)
        self.path, self.field, self.detail = Path(path), field, detail or message


class ConfigDamagedError(RunDamagedError, ConfigError):
    """``config.yaml`` holds a section or value of the wrong type (a ConfigError too, as it always was)."""
