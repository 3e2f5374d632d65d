"""The web face's shared handlers: errors as gradio shows them, the run picker, the buttons, polling, stop, delete.

Every handler reads the app's state as ``state.X`` at call time (see ``kinject.web.state``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from pathlib import Path
from typing import Any

import gradio as gr

from kinject.runs import RunDamagedError, RunDir, RunError
from kinject.runtime.jobs import JobOutcome, JobState, describe_job
from kinject.settings.fields import from_dict, to_dict
from kinject.settings.resolve import training_blocks
from kinject.settings.stages import AugmentConfig, BlocksConfig, ConfigError, EvalConfig
from kinject.settings.training import TrainConfig

from . import state
from .eval_view import eval_plan_text, loss_figure, plot_key
from .forms import TRAIN_FIELDS, form_configs, form_defaults, takes_fields, train_form_values
from .views import damaged_line, runs_table, source_names, status_text
from .words import app_text


def user_error(message: str) -> gr.Error:
    """A verb's message as the error the app shows (its CLI hints named as the app's controls)."""
    return gr.Error(app_text(message))


def pick_run(name: str | None) -> RunDir:
    """The run ``name`` names, or a gr.Error saying to choose one (see ``state.run_dir``)."""
    try:
        return state.run_dir(name)
    except state.WebError as exc:
        raise gr.Error(str(exc)) from None


def view_handler(fn):
    """``fn`` (a plain view) as an event handler: its ``state.WebError``, or a run's RunError (a damaged file, named
    with its field), becomes the gr.Error the app shows."""

    @functools.wraps(fn)
    def handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except state.WebError as exc:
            raise gr.Error(str(exc)) from None
        except RunError as exc:
            raise user_error(str(exc)) from None

    assert not inspect.isgeneratorfunction(fn), "view_handler() wraps plain views, not streaming handlers"
    return handler


def runs_update(selected: str | None = None) -> Any:
    """The run picker's choices, with ``selected`` chosen when it exists (else the newest run)."""
    names = state.list_runs()
    return gr.update(choices=names, value=selected if selected in names else (names[0] if names else None))


def button_states(name: str | None) -> list[Any]:
    """Which actions make sense now: nothing that needs the model while a job runs; Resume only after a training
    that did not finish (stopped, failed, interrupted) left a checkpoint; Merge only with an adapter."""
    busy = state.JOBS.running()
    run = RunDir(state.RUNS_ROOT / name) if state.valid_run_name(name) else None
    run = run if run is not None and run.is_run() else None
    adapter = run is not None and run.has_adapter()
    resumable = False
    if run is not None and run.last_checkpoint() is not None:
        with contextlib.suppress(OSError, ValueError):
            resumable = run.read_adapter_meta().get("status") != "done" if adapter else True
    live = state.JOBS.state()
    own_job = busy and run is not None and Path(live.run_dir).name == run.name
    free = not busy
    return [
        gr.update(interactive=free),  # prepare
        gr.update(interactive=free and run is not None),  # start
        gr.update(interactive=free and resumable),  # resume
        gr.update(interactive=busy and not state.JOBS.stopping()),  # stop: pressed once, it stays off
        gr.update(interactive=free and run is not None),  # evaluate
        gr.update(interactive=free and run is not None),  # ask
        gr.update(interactive=free and adapter),  # merge
        gr.update(interactive=free and adapter),  # export
        gr.update(interactive=run is not None and not own_job),  # delete
        gr.update(interactive=free and adapter),  # push
    ]


def run_status(run: str | None) -> str:
    """The status area for ``run`` (``views.status_text``), a bad run name as a gr.Error."""
    if run:
        pick_run(run)
    text = status_text(run)
    return f"{stopping_line()}\n\n{text}" if state.JOBS.stopping() else text


def stopping_line() -> str:
    """What the status area says at once when Stop was pressed, until the job ends at its next check."""
    live = state.JOBS.state()
    if live.kind == "train" and live.step:
        return f"**Stopping after step {live.step}** (the adapter trained so far is saved)…"
    return f"**Stopping** {describe_job(live)} at its next check (what it has done so far is kept)…"


def stop_job(run: str | None = None):
    """Stop the running job (a training saves its adapter so far, an evaluation keeps what it scored)."""
    if not state.JOBS.stop():
        gr.Info("No job is running.")
    return run_status(run)


def wait_for_job(run: str | None, job: JobState, every_s: float = 0.5):
    """Yield the status area's text while ``job`` (as ``submit`` returned it) runs: the handler that started it
    shows its progress, and stops waiting when that job ends, whatever another user starts next."""
    while state.JOBS.job_running(job.job_id):
        yield run_status(run)
        state.JOBS.wait(every_s)
    yield run_status(run)


def job_ended(job: JobState) -> tuple[JobState, JobOutcome | None]:
    """``job``'s final state and outcome (its own, not those of a job another user started since)."""
    while state.JOBS.job_running(job.job_id):
        state.JOBS.wait(0.5)
    return state.JOBS.result(job.job_id) or (state.JOBS.state(), state.JOBS.outcome())


def job_finished(job: JobState) -> JobOutcome:
    """The outcome of ``job``, or its failure as a gr.Error naming what to change."""
    job_state, outcome = job_ended(job)
    if job_state.status == "failed":
        raise user_error(job_state.error or job_state.message or f"the {job.kind} job failed")
    return outcome if outcome is not None else JobOutcome(job_state.status, job_state.message)


def poll(run: str | None = None, shown: str | None = None):
    """The status area, the loss plot (only when it changed), whether to keep polling, the buttons' states, and the
    forms' controls: locked while a job runs (what it runs with is fixed), open again when it ends."""
    active = state.JOBS.running()  # read first: if the job ends meanwhile, the view below already shows it ended
    # Polling goes on a few seconds after a job's button was pressed, even before its job has started.
    following = time.monotonic() < state.FOLLOW_UNTIL
    text = run_status(run)
    plot, key = None, ""
    if run:
        run_dir = pick_run(run)
        try:
            key = plot_key(run_dir)
            plot = gr.skip() if key == shown else loss_figure(run_dir)
        except RunDamagedError as exc:  # metrics.jsonl: the status area names the line and field
            plot, key = None, ""
            text = f"{text}\n\n{damaged_line(run, exc)}"
    locks = [gr.update(interactive=not active)] * state.LOCKED_CONTROLS
    return (text, plot, key, gr.Timer(active=active or following), *button_states(run), *locks)


FOLLOW_S = 10.0  # how long the poll waits for the job a button starts (its handler may queue behind others)


def follow_job(run: str | None = None, shown: str | None = None):
    """``poll`` with the timer on: wired on a job's button *before* the handler that starts the job, so the one
    status poll follows whatever started it (prepare, evaluate, merge, push) and Stop goes live at its first tick.

    Before, not after: gradio's page runs the listeners of one click in turn, each to its end, so a listener after
    a streaming handler would only run once the job is over. The poll runs on for ``FOLLOW_S`` even before the job
    has started (its handler may wait in the queue); once that time is up and nothing runs (the handler refused to
    start a job), a tick turns the timer off."""
    state.FOLLOW_UNTIL = time.monotonic() + FOLLOW_S
    text, plot, key, _timer, *rest = poll(run, shown)
    return (text, plot, key, gr.Timer(active=True), *rest)


def remember_cli(run: str | None, line: str, lines: dict[str, str] | None) -> dict[str, str]:
    """The browser's record of each run's CLI-equivalent line, with ``run``'s new one (kept across reloads)."""
    return {**(lines or {}), run: line} if run and line else dict(lines or {})


def cli_of(run: str | None, lines: dict[str, str] | None) -> str:
    """The CLI-equivalent line of ``run``'s last training started from this browser, "" when none."""
    return (lines or {}).get(run or "", "")


@takes_fields("eval")
def eval_plan(run: str | None = None, **settings: Any) -> str:
    """The Evaluate tab's line on what pressing Evaluate runs, quick or full, and how long the full set takes."""
    if not run:
        return ""
    try:
        run_dir = state.run_dir(run)
        configs = form_configs("eval", settings)
    except state.WebError as exc:
        return str(exc)
    except ConfigError as exc:
        return app_text(str(exc))
    return eval_plan_text(run_dir, configs["eval"], configs["generation"]) if run_dir.is_run() else ""


FORM_UNCHANGED = [gr.skip()] * (len(TRAIN_FIELDS) + 1)  # the Train form's outputs (run_settings'), left as they are


def run_settings(run: str | None = None) -> list[Any]:
    """The Train form's values for run ``run``: its saved config.yaml read back into the same fields (what its job
    ran with, running, stopped or done), or the app's defaults with the run's blocks before its first training; then
    the preset they show (the form's ``shown_preset``)."""
    values = form_defaults()
    if run and pick_run(run).is_run():
        try:
            saved = pick_run(run).read_config()
            if saved.get("train"):
                train = from_dict(TrainConfig, saved["train"], "train")
                blocks = from_dict(BlocksConfig, saved.get("blocks"), "blocks")
            else:
                train = TrainConfig(eval_at_end=values["eval_at_end"])
                blocks = training_blocks(saved.get("blocks"), train.preset)
            evaluation = from_dict(EvalConfig, saved["eval"], "eval") if saved.get("eval") else None
            augment = from_dict(AugmentConfig, saved.get("augment"), "augment")
            values.update({**to_dict(train), **to_dict(blocks), **to_dict(augment)})
            if evaluation is not None:
                values.update(to_dict(evaluation))
        except (ConfigError, RunDamagedError) as exc:  # the message names config.yaml and the field
            gr.Warning(app_text(f"Run {run}'s settings do not read back ({exc}); the form shows the defaults."))
            values = form_defaults()
    return [*train_form_values(values), values["preset"]]


def source_choices(run: str | None = None) -> Any:
    """The selected run's sources that gave text, for the Sources view."""
    if not run:
        return gr.update(choices=[], value=None)
    pick_run(run)
    try:
        names = source_names(run)
    except RunDamagedError as exc:  # a warning: an error would badge the picker this follows
        gr.Warning(app_text(str(exc)))
        names = []
    return gr.update(choices=names, value=names[0] if names else None)


def delete_run(run: str | None = None, confirm: str = ""):
    """Delete a run folder once its name is typed to confirm; never the run a job is working on. Returns the run
    picker (the newest run selected), the runs table, the cleared confirmation and the Train form's values for the
    selected run.

    A refusal is a warning that leaves the outputs as they are: raised, it would mark the run picker with an error
    badge that hides the selected run."""
    run_dir = pick_run(run)
    refusal = None
    live = state.JOBS.state()
    if (confirm or "").strip() != run_dir.name:
        refusal = f"To delete run {run_dir.name}, type its name in “Type the run's name to confirm”."
    elif live.active and Path(live.run_dir).name == run_dir.name:
        refusal = f"Run {run_dir.name} has a job running ({describe_job(live)}): press Stop first."
    else:
        try:
            run_dir.delete()
        except RunError as exc:
            refusal = app_text(str(exc))
    if refusal:
        gr.Warning(refusal)
        return gr.skip(), gr.skip(), gr.skip(), *FORM_UNCHANGED
    gr.Info(f"Deleted run {run_dir.name}.")
    try:
        picker = runs_update()
        return picker, runs_table(), "", *run_settings(picker["value"])
    except Exception as exc:  # noqa: BLE001 - the run is gone whatever failed here: never report the delete failed
        gr.Warning(f"Run {run_dir.name} was deleted, but the runs list could not be refreshed ({exc}): press Refresh.")
        return gr.skip(), gr.skip(), "", *FORM_UNCHANGED


def on_load():
    """The page's state on (re)load: the job's run selected (else the newest), its settings, status and buttons."""
    job = state.JOBS.state()
    names = state.list_runs()
    selected = Path(job.run_dir).name if job.run_dir and Path(job.run_dir).name in names else None
    selected = selected or (names[0] if names else None)
    return runs_update(selected), runs_table(), *run_settings(selected), *poll(selected)
