"""The tracked curves as plain values (no gradio): where a run's curves can be seen (the command that opens trackio's
dashboard or TensorBoard on them) and two runs' loss curves in one figure."""

from __future__ import annotations

from typing import Any

from kinject.runs import RunError, viewing_command

from . import state

COLORS = ("#2a7ab9", "#d9822b")


def dashboard_text(run: str | None = None) -> str:
    """How to see the selected run's curves: the command for the tracker its training used ('trackio' for a run
    not trained yet), with the project and the storage folder in it."""
    if not run:
        return "Choose a run to see how to open its curves."
    run_dir = state.run_dir(run)
    try:
        report_to = run_dir.section("train").get("report_to") or "trackio"
    except (OSError, RunError):
        report_to = "trackio"
    command = viewing_command(run_dir, report_to)
    if not command:
        return f"Run {run} tracks no curves (report_to none): its loss is in the Train tab's plot."
    project, name = run_dir.tracking_names()
    where = (
        f"trackio, project **{project}**, run **{name}** (stored on this machine; nothing is sent anywhere)"
        if report_to == "trackio"
        else "TensorBoard event files in the run folder"
    )
    return (
        f"Curves of {run} ({where}): run this in a terminal on the machine that trains, then open the address "
        f"it prints:\n\n```\n{command}\n```\nTracking is set by `report_to` in the Train tab's advanced settings "
        "('none' turns it off)."
    )


def curves_figure(first: str | None = None, second: str | None = None) -> Any:
    """The training loss by step of two runs in one figure (None when neither logged a step)."""
    series = []
    for name in (first, second):
        if not name:
            continue
        try:
            rows = state.run_dir(name).read_metrics()
        except (OSError, RunError) as exc:
            raise state.WebError(f"Run {name}'s loss curve cannot be read: {exc}") from exc
        points = [(int(r["step"]), float(r["loss"])) for r in rows if "loss" in r and "step" in r]
        if points:
            series.append((name, points))
    if not series:
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    fig = Figure(figsize=(9, 3), dpi=100)
    ax = fig.subplots()
    for (name, points), color in zip(series, COLORS, strict=False):
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, marker="o" if len(points) <= 60 else None, markersize=3, color=color, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
