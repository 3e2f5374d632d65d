"""The web face's process-wide state: where runs live, the operator's settings, the jobs and the chat backend.

Every module of the web face reads these as ``state.X`` at call time, so a test (or ``build_ui``) that sets one
changes what every handler sees.
"""

from __future__ import annotations

import re

from kinject.runs import RunDir
from kinject.runtime.jobs import JOBS
from kinject.serving.backends import choose_backend
from kinject.settings.places import runs_root
from kinject.settings.services import AppConfig

RUNS_ROOT = runs_root()
OPERATOR = AppConfig()  # the operator's launch settings (set by build_ui); nothing a web user sends changes them
CHAT = choose_backend()
FOLLOW_UNTIL = 0.0  # time.monotonic() until which the status poll runs though no job runs yet (see follow_job)
LOCKED_CONTROLS = 0  # how many form controls lock while a job runs (set by build_ui; they follow the status poll)
__all__ = [
    "CHAT",
    "FOLLOW_UNTIL",
    "JOBS",
    "LOCKED_CONTROLS",
    "OPERATOR",
    "RUNS_ROOT",
    "WebError",
    "list_runs",
    "run_dir",
    "valid_run_name",
]


class WebError(Exception):
    """A message for the web user (the gradio side shows it as an error)."""


def valid_run_name(name: str | None) -> bool:
    """Whether ``name`` may name a run folder under RUNS_ROOT (no path, no hidden folder)."""
    return bool(name) and re.fullmatch(r"[\w.-]+", name) is not None and not name.startswith(".")


def run_dir(name: str | None) -> RunDir:
    """The run folder ``name`` under RUNS_ROOT; WebError when none is chosen or the name is not a run name."""
    if not name:
        raise WebError("Choose a run first (prepare one in the Prepare tab).")
    if not valid_run_name(name):
        raise WebError(f"Invalid run name {name!r}: use letters, digits, '-', '_' and '.'.")
    return RunDir(RUNS_ROOT / name)


def list_runs() -> list[str]:
    """Run folders under RUNS_ROOT, newest first."""
    if not RUNS_ROOT.is_dir():
        return []
    found = [p for p in RUNS_ROOT.iterdir() if RunDir(p).is_run()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]
