"""Where kinject finds and keeps things, each spelled here and nowhere else: the data it ships (``SHIPPED``), its
cache (``KINJECT_HOME``), the runs (``KINJECT_RUNS``), the tracked curves (``KINJECT_TRACKING``), and the chat
server it talks to when one runs elsewhere (``KINJECT_ENDPOINT``).

A variable that is unset or blank leaves the default. The operator's launch settings of the app
(``AppConfig.from_env``) and the secrets (``HF_TOKEN``, ``KINJECT_API_KEY``, ``KINJECT_AUTH``) are read where they
are used, so they never travel through settings.
"""

from __future__ import annotations

import os
from pathlib import Path

# The prompts, probes and general text kinject ships (the replay's, the guard's and the evaluation's).
SHIPPED = Path(__file__).resolve().parent.parent / "data"


def kinject_home() -> Path:
    """The cache root: ``$KINJECT_HOME`` or ``~/.cache/kinject`` (converted models, shared replay, TGI's logs)."""
    return Path(os.environ.get("KINJECT_HOME") or Path.home() / ".cache" / "kinject").expanduser()


def tracking_dir() -> Path:
    """Where trackio keeps the tracked curves of every run (TrainConfig.report_to 'trackio'):
    ``$KINJECT_TRACKING`` or ``<KINJECT_HOME>/tracking``."""
    return Path(os.environ.get("KINJECT_TRACKING") or kinject_home() / "tracking").expanduser()


def runs_root() -> Path:
    """Where run folders live: ``$KINJECT_RUNS`` or ``./runs``."""
    return Path(os.environ.get("KINJECT_RUNS") or "runs").expanduser()


def chat_endpoint() -> str | None:
    """The TGI-protocol server named by ``$KINJECT_ENDPOINT`` (None when unset): the app chats through it, and
    ``kinject chat`` asks it unless ``--endpoint`` says otherwise."""
    return os.environ.get("KINJECT_ENDPOINT", "").strip() or None
