"""The errors of a run folder: missing or incomplete, busy, or holding a damaged adapter."""

from __future__ import annotations

from ..errors import KinjectError


class RunError(KinjectError, RuntimeError):
    """A run folder is missing, incomplete or would be overwritten."""


class RunBusyError(RunError):
    """Another process (or job) is training this run."""


class AdapterDamagedError(RunError):
    """The adapter's weights file cannot be read (cut off by a crash or a full disk, or empty)."""
