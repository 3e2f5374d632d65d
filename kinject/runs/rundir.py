"""``RunDir``: one run folder, composed of the parts that own its records, data, reports, weights and life."""

from __future__ import annotations

from .adapters import RunAdapters
from .checkpoints import RunCheckpoints
from .data import RunData
from .evaluation import RunEvaluation
from .folders import RunFolders


class RunDir(RunFolders, RunAdapters, RunCheckpoints, RunEvaluation, RunData):
    """One run folder: every path, read, atomic write and the training lock. Cheap to create; nothing is read until
    asked. Each part is a class of its own module (``paths``, ``records``, ``data``, ``evaluation``,
    ``checkpoints``, ``adapters``, ``folders``); a caller sees only this one object."""
