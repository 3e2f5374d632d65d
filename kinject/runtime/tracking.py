"""Experiment tracking: one small interface (``open_tracker`` -> ``Tracker.log(metrics, step)``, ``finish()``) over
trackio (a local dashboard), TensorBoard (event files) or nothing.

trackio is kept local: its runs go into the folder given (kinject keeps it under its home), the run is never sent
to a Space or a server whatever the environment says (``TRACKIO_SPACE_ID``, ``TRACKIO_SERVER_URL``), and nobody is
asked who the user is (trackio's own run would ask the Hub, with the token found). A tracker never breaks the work
it watches: a backend that cannot start, or a call that fails, is said once through ``warn`` and the work goes on.
The configuration tracked is ``clean_config``'s: no field named like a secret, no URL's query, fragment or
credentials.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPORT_TO = ("trackio", "tensorboard", "none")
# A field whose name has one of these words (split at '_', '-' and '.') is never tracked.
SECRET_WORDS = frozenset(
    {"token", "password", "passwd", "secret", "key", "apikey", "auth", "credential", "credentials"}
)


class Tracker:
    """The tracker that tracks nothing ("none"); the backends override ``log`` and ``finish``."""

    backend = "none"

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record ``metrics`` (name -> number; anything else is left out) at ``step``."""

    def finish(self) -> None:
        """Write what is pending and close; nothing is logged afterwards."""


class _Guarded(Tracker):
    """A backend whose failures are said once (through ``warn``) and never raised."""

    def __init__(self, inner: Any, backend: str, warn: Callable[[str], None]) -> None:
        self._inner, self.backend, self._warn = inner, backend, warn
        self._warned = False
        self._open = True

    def _failed(self, what: str, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            self._warn(f"{self.backend} tracking: {what} failed ({type(exc).__name__}: {exc}); training goes on")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        numbers = _numbers(metrics)
        if not (self._open and numbers):
            return
        try:
            self._inner.log(numbers, int(step))
        except Exception as exc:  # noqa: BLE001 - a tracker never breaks the training it watches
            self._failed("logging", exc)

    def finish(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._inner.finish()
        except Exception as exc:  # noqa: BLE001
            self._failed("finishing", exc)


def open_tracker(
    report_to: str,
    project: str,
    run_name: str,
    config: dict[str, Any] | None,
    home: str | Path,
    log_dir: str | Path | None = None,
    resume: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Tracker:
    """A tracker of ``run_name`` in ``project``: ``report_to`` "trackio" (its storage in ``home``), "tensorboard"
    (event files in ``log_dir``) or "none". ``config`` is tracked as the run's settings, cleaned (``clean_config``).
    ``resume`` continues trackio's latest run of that name (an evaluation after its training) instead of starting
    another. A backend that cannot start gives the "none" tracker, said once through ``warn``."""
    warn = warn or (lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3))
    if report_to not in REPORT_TO:
        warn(f"tracking off: report_to must be one of {', '.join(REPORT_TO)}, got {report_to!r}")
        return Tracker()
    if report_to == "none":
        return Tracker()
    cleaned = clean_config(config or {})
    try:
        if report_to == "trackio":
            inner: Any = _Trackio(project, run_name, cleaned, Path(home), resume)
        else:
            if log_dir is None:
                raise ValueError("no folder for the event files")
            inner = _TensorBoard(Path(log_dir), run_name, cleaned)
    except Exception as exc:  # noqa: BLE001 - no tracking rather than no training
        warn(f"{report_to} tracking off: it could not start ({type(exc).__name__}: {exc})")
        return Tracker()
    return _Guarded(inner, report_to, warn)


def clean_config(value: Any) -> Any:
    """``value`` (settings as plain data) fit to be tracked: fields named like a secret (``SECRET_WORDS``) dropped,
    URLs without their query, fragment or user and password."""
    if isinstance(value, dict):
        return {str(k): clean_config(v) for k, v in value.items() if not _secret_name(str(k))}
    if isinstance(value, (list, tuple)):
        return [clean_config(v) for v in value]
    if isinstance(value, str):
        return _clean_url(value)
    return value


def _secret_name(name: str) -> bool:
    return any(word in SECRET_WORDS for word in re.split(r"[_\-.\s]+", name.lower()))


def _clean_url(text: str) -> str:
    """``text`` unchanged unless it is a URL: then without its query, fragment and credentials."""
    try:
        parts = urlsplit(text.strip())
        if not (parts.scheme and parts.netloc) or " " in text.strip():
            return text
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 address keeps its brackets
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:  # a malformed port or address: tracked as nothing rather than as it is
        return ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are finite numbers (a bool as 0 or 1)."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = value
    return out


def dashboard_command(project: str, home: str | Path) -> str:
    """The shell command that shows ``project``'s trackio dashboard from the storage in ``home``."""
    return f"TRACKIO_DIR={shlex.quote(str(home))} trackio show --project {shlex.quote(project)}"


def tensorboard_command(log_dir: str | Path) -> str:
    """The shell command that shows the TensorBoard event files under ``log_dir``."""
    return f"tensorboard --logdir {shlex.quote(str(log_dir))}"


# ------------------------------------------------------------------------------------------------------- backends
class _TensorBoard:
    """Scalars into TensorBoard event files; the settings as one text entry."""

    def __init__(self, log_dir: Path, run_name: str, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        text = json.dumps(config, indent=2, ensure_ascii=False, default=str)
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)  # a code block
        self.writer.flush()

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # each step readable while training runs (a few hundred bytes)

    def finish(self) -> None:
        self.writer.close()


_TRACKIO_PLACES = ("TRACKIO_DIR", "MEDIA_DIR", "ARTIFACTS_DIR")


def _trackio_at(folder: Path) -> None:
    """Point trackio's local storage at ``folder``. trackio reads ``TRACKIO_DIR`` once, when first imported, into
    module constants; a process that imported it for another folder has those constants moved."""
    folder = folder.expanduser().resolve()
    os.environ["TRACKIO_DIR"] = str(folder)
    import trackio.utils

    old = {name: getattr(trackio.utils, name) for name in _TRACKIO_PLACES}
    if Path(old["TRACKIO_DIR"]) == folder:
        return
    new = {"TRACKIO_DIR": folder, "MEDIA_DIR": folder / "media", "ARTIFACTS_DIR": folder / "artifacts"}
    for name, module in list(sys.modules.items()):
        if module is not None and (name == "trackio" or name.startswith("trackio.")):
            for attr in _TRACKIO_PLACES:
                if getattr(module, attr, None) == old[attr]:
                    setattr(module, attr, new[attr])


class _Trackio:
    """One local trackio run (trackio's ``Run`` made directly: never a Space, a server or the Hub's whoami)."""

    def __init__(self, project: str, run_name: str, config: dict[str, Any], home: Path, resume: bool) -> None:
        home.mkdir(parents=True, exist_ok=True)
        _trackio_at(home)
        from trackio.run import Run
        from trackio.sqlite_storage import SQLiteStorage

        class LocalRun(Run):
            def _get_username(self) -> None:  # trackio's own asks the Hub (whoami, with the token found)
                return None

        SQLiteStorage.validate_project_name(project)
        if SQLiteStorage.get_project_db_path(project).exists():
            SQLiteStorage.init_db(project)  # brings an older trackio's database to this one's schema
        existing = SQLiteStorage.get_latest_run_record_by_name(project, run_name) if resume else None
        with contextlib.redirect_stdout(sys.stderr):  # trackio prints; kinject's stdout stays parseable (--json)
            self.run = LocalRun(
                url=None,
                project=project,
                client=None,
                name=run_name,
                run_id=existing["id"] if existing else None,
                config=config,
                space_id=None,
                server_base_url=None,
                auto_log_gpu=False,
                auto_log_cpu=False,
            )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            self.run.finish()
