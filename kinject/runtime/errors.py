"""The one mark of an expected failure, and the one wording of a failed file or system operation.

The CLI prints either as one line (no traceback) and exits 1; the app shows it as its message.
"""

from __future__ import annotations

import errno


class KinjectError(Exception):
    """A failure kinject foresaw, whose message says what happened and what to do (a stage's error subclasses it
    beside its builtin base, e.g. ``ConfigError(KinjectError, ValueError)``)."""


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


class BusyError(KinjectError):
    """What a job needs is held by another job or process: the job was refused before it started work, so it
    leaves the holder's records (the run's status) as they are."""
