"""A run's experiment tracker: its curves under the run's tracking names (``RunPaths.tracking_names``), trackio's
storage in kinject's tracking folder (``kinject.settings.places.tracking_dir``), TensorBoard's event files in the
run folder, and the run's settings (its ``config.yaml`` sections, cleaned of secrets) as the tracked config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..runtime.tracking import Tracker, dashboard_command, open_tracker, tensorboard_command
from ..settings.places import tracking_dir
from .paths import RunPaths


def open_run_tracker(
    run: Any,
    report_to: str,
    sections: dict[str, Any] | None = None,
    resume: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Tracker:
    """The tracker of ``run`` (a ``RunDir``), its config its ``config.yaml`` with ``sections`` in place of the
    saved ones (a training's settings before it writes them); ``resume`` continues the run's latest tracked run
    (an evaluation after its training)."""
    project, name = run.tracking_names()
    try:
        config = {**run.read_config(), **(sections or {})}
    except Exception as exc:  # noqa: BLE001 - a damaged config.yaml costs the tracked settings, not the curves
        config = {**(sections or {})}
        if warn is not None:
            warn(f"tracking: the run's settings are not tracked ({type(exc).__name__}: {exc})")
    return open_tracker(
        report_to, project, name, config, tracking_dir(), run.tensorboard_dir, resume=resume, warn=warn
    )


def viewing_command(run: RunPaths, report_to: str) -> str:
    """The shell command that shows ``run``'s tracked curves ("" for ``report_to`` "none")."""
    if report_to == "trackio":
        return dashboard_command(run.tracking_names()[0], tracking_dir())
    if report_to == "tensorboard":
        return tensorboard_command(run.tensorboard_dir)
    return ""
