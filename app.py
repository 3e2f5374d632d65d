"""kinject web app: Gradio UI wiring only; every action calls the same kinject verbs as the CLI.

`python app.py [--host H] [--port P] [--allow-private-urls] [--allowed-networks CIDR ...]`. Runs live under
$KINJECT_RUNS (default ./runs). Bound to a non-loopback address the app requires $KINJECT_AUTH ("user:password",
passwords of 8 characters or more, not easily guessed; repeated failed logins lock the name and the address out
for a while), or refuses to start unless $KINJECT_ALLOW_NO_AUTH=1. Which addresses the server may fetch is the
operator's launch setting (``kinject.config.AppConfig``: flags or KINJECT_* variables), shown in the Prepare tab and
never a form field.

The forms are built from the config dataclasses (``kinject.config.describe_fields``): each field is a control
named after it, and each handler receives the controls' values by field name (gradio's ``inputs_kwargs``) and
builds the same config objects the CLI builds. A field added to a config class appears under "Advanced settings"
without a change here.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import contextvars
import hmac
import inspect
import ipaddress
import logging
import math
import os
import re
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a self-hosted tool

import gradio as gr  # noqa: E402
from fastapi import HTTPException  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from kinject.backends import BackendError, choose_backend, stream_chat  # noqa: E402
from kinject.config import (  # noqa: E402
    DEFAULT_PRESET,
    OPERATOR_FETCH_FIELDS,
    PRESET_FIELDS,
    AppConfig,
    AugmentConfig,
    BlocksConfig,
    ConfigError,
    EvalConfig,
    FieldInfo,
    ModelConfig,
    PrepareConfig,
    PublishConfig,
    TrainConfig,
    build,
    describe_fields,
    from_dict,
    to_dict,
    training_blocks,
)
from kinject.eval.contamination import contamination_line  # noqa: E402
from kinject.eval.report import learnt_nothing, no_gain_line  # noqa: E402
from kinject.jobs import JOBS, JobBusyError, JobOutcome, JobState, describe_job  # noqa: E402
from kinject.runs import RunDir, RunError  # noqa: E402
from kinject.verbs import VERB_SECTIONS, describe_os_error, prepare_command, train_command  # noqa: E402

RUNS_ROOT = Path(os.environ.get("KINJECT_RUNS", "runs"))
OPERATOR = AppConfig()  # the operator's launch settings (set by build_ui); nothing a web user sends changes them
SOURCE_COLUMNS = ["status", "input", "title", "chars", "tokens", "error"]
_UNSET = object()


# --- Forms from the config dataclasses -----------------------------------------------------------------------------
def field_input(info: FieldInfo, value: Any = _UNSET) -> gr.Component:
    """The control for one config field: its help is the control's info text."""
    value = info.default if value is _UNSET else value
    kw: dict[str, Any] = {"label": info.name.replace("_", " ").capitalize(), "info": info.help}
    if info.kind == "bool":
        return gr.Checkbox(value=bool(value), **kw)
    if info.kind == "choice":
        return gr.Dropdown(choices=list(info.choices), value=value, **kw)
    if info.kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if info.kind == "int" else None, **kw)
    if info.kind == "list":
        return gr.Textbox(value="\n".join(value or []), lines=2, placeholder="one per line", **kw)
    return gr.Textbox(value=value if value is not None else "", **kw)


def settings_form(
    sections: dict[str, type],
    rows: list[list[str]],
    values: dict[str, Any] | None = None,
    made: dict[str, Any] | None = None,
    leave_out: tuple[str, ...] = (),
) -> dict[str, gr.Component]:
    """Controls for every field of ``sections``: the ``rows`` named first, the rest in "Advanced settings".

    ``values`` override defaults; ``made`` builds a custom control for a field (an upload box, say).
    """
    infos = {i.name: i for cls in sections.values() for i in describe_fields(cls)}
    values, made = values or {}, made or {}
    form: dict[str, gr.Component] = {}

    def add(name: str) -> None:
        form[name] = made[name]() if name in made else field_input(infos[name], values.get(name, _UNSET))

    for row in rows:
        with gr.Row():
            for name in row:
                add(name)
    rest = [name for name in infos if name not in form and name not in leave_out]
    if rest:
        with gr.Accordion("Advanced settings", open=False):
            for start in range(0, len(rest), 3):
                with gr.Row():
                    for name in rest[start : start + 3]:
                        add(name)
    return form


def takes_fields(verb: str, leave_out: tuple[str, ...] = ()):
    """Declare that a handler takes ``verb``'s config fields as keyword arguments (its ``**settings``).

    Gradio reads a handler's signature to name its API parameters: declared with a default, a field the client
    leaves out is sent as the control's value (or None, which means the field's default), not refused. Fields in
    ``leave_out`` are no parameter at all (the operator's settings): an API call naming one is refused.
    """

    def declare(fn):
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [
            inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=None)
            for cls in VERB_SECTIONS[verb].values()
            for info in describe_fields(cls)
            if info.name not in leave_out
        ]
        fn.__signature__ = signature.replace(parameters=params)
        return fn

    return declare


def section_configs(verb: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Each config section of ``verb`` built from form values keyed by field name."""
    configs = {}
    for section, cls in VERB_SECTIONS[verb].items():
        names = {i.name for i in describe_fields(cls)}
        configs[section] = build(cls, {k: v for k, v in settings.items() if k in names}, section)
    return configs


def list_runs() -> list[str]:
    """Run folders under RUNS_ROOT, newest first."""
    if not RUNS_ROOT.is_dir():
        return []
    found = [p for p in RUNS_ROOT.iterdir() if RunDir(p).is_run()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def _run(name: str | None) -> RunDir:
    if not name:
        raise gr.Error("Choose a run first (prepare one in the Prepare tab).")
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise gr.Error(f"Invalid run name {name!r}: use letters, digits, '-', '_' and '.'.")
    return RunDir(RUNS_ROOT / name)


def _runs_update(selected: str | None = None) -> Any:
    names = list_runs()
    return gr.update(choices=names, value=selected if selected in names else (names[0] if names else None))


# --- Messages that name the app's controls -------------------------------------------------------------------------
# The verbs' messages speak to a CLI user; in the app each hint becomes the control that does the same.
_APP_PHRASES = [
    (
        r"choose another --out or pass --force to replace it",
        "choose another Run name, or tick “Replace an existing run of that name” (Prepare tab)",
    ),
    (r"rerun `kinject prepare --force`", "prepare it again with “Replace an existing run of that name” ticked"),
    (r"(?:create it with |run )?`kinject prepare`( first)?", "prepare it first (Prepare tab)"),
    (r"train it first \(`kinject train [^`]*`\)", "train it first (Start, Train tab)"),
    (r"`kinject train [^`]*`", "the Train tab"),
    (r"`kinject merge`", "the Merge button (Runs tab)"),
    (r"(?:resume )?with --resume|--resume", "press Resume (Train tab)"),
    (r"--preset ([\w-]+)", r"Preset “\1” (Train tab)"),
]


def _control(match: re.Match) -> str:
    """A CLI option as the app control of the same field: "--no-use-qa" -> “Use qa” (untick it), "--replay-share 0"
    -> set “Replay share” to 0; an option that is no field stays as it is."""
    option, value = match.group(1), match.group(2)
    negated = option.startswith("no-")
    name = option[3 if negated else 0 :].replace("-", "_")
    infos = {i.name: i for sections in VERB_SECTIONS.values() for c in sections.values() for i in describe_fields(c)}
    if name not in infos:
        return match.group(0)
    label = f"“{name.replace('_', ' ').capitalize()}”"
    if infos[name].kind == "bool":
        return f"{label} ({'untick' if negated else 'tick'} it)" + (f" {value}" if value else "")
    return f"set {label} to {value}" if value else label


def app_text(message: str) -> str:
    """A verb's message with its CLI hints replaced by the app's controls (see ``_APP_PHRASES``)."""
    for pattern, replacement in _APP_PHRASES:
        message = re.sub(pattern, replacement, message)
    return re.sub(r"--([a-z][a-z0-9-]*)(?: ([^\s,;)-][^\s,;)]*))?", _control, message)


def _error(message: str) -> gr.Error:
    return gr.Error(app_text(message))


# --- Jobs: one status area, progress, stop, buttons ----------------------------------------------------------------
def _seconds(value: float | None) -> str:
    """A duration for people: "45 s", "12 min", "2 h 5 min"."""
    if value is None:
        return ""
    s = round(value)
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round(s % 3600 / 60)} min"


def _job_line(state: JobState) -> str:
    """What a job does or did: its kind and run, its phase with count/total while active, and the ETA."""
    if not state.active:
        state = JobState(**{**state.to_dict(), "phase": "", "phase_total": 0})
    line = f"{state.status}: {describe_job(state)}"
    return line + (f" · ETA {_seconds(state.eta_s)}" if state.active and state.eta_s else "")


def _training_line(state: JobState) -> str:
    """The training numbers of a run's last job (step, epoch, loss, speed, memory), rounded; "" before training."""
    if not state.total:
        return ""
    parts = [f"step {state.step}/{state.total}", f"epoch {state.epoch:.2f}"]
    if state.loss is not None:
        parts.append(f"loss {state.loss:.3f}")
    if state.tokens_per_s and state.kind == "train" and state.active:
        parts.append(f"{state.tokens_per_s:,.0f} tokens/s")
    if state.peak_memory_mb:
        parts.append(f"peak memory {state.peak_memory_mb:,.0f} MB")
    return "Training: " + " · ".join(parts)


def status_text(name: str | None) -> str:
    """The status area: the job running now (whatever its run) and the selected run's last job."""
    lines = []
    live = JOBS.state()
    if live.active and (not name or Path(live.run_dir).name != name):
        lines.append(f"**Running now:** {_job_line(live)}")
    if name:
        state = JOBS.status_of(_run(name))
        if state is None:
            lines.append(f"**{name}**: prepared, not trained yet.")
        else:
            lines.append(f"**{name}** · {_job_line(state)}")
            if training := _training_line(state):
                lines.append(training)
            if state.error:
                lines.append(f"**Error:** {app_text(state.error)}")
            elif state.message:
                lines.append(app_text(state.message))
    return "\n\n".join(lines) or "No run selected."


def button_states(name: str | None) -> list[Any]:
    """Which actions make sense now: nothing that needs the model while a job runs; Resume only after a training
    that did not finish (stopped, failed, interrupted) left a checkpoint; Merge only with an adapter."""
    busy = JOBS.running()
    run = RunDir(RUNS_ROOT / name) if name and re.fullmatch(r"[\w.-]+", name) and not name.startswith(".") else None
    run = run if run is not None and run.is_run() else None
    adapter = run is not None and run.has_adapter()
    resumable = False
    if run is not None and run.last_checkpoint() is not None:
        with contextlib.suppress(OSError, ValueError):
            resumable = run.read_adapter_meta().get("status") != "done" if adapter else True
    live = JOBS.state()
    own_job = busy and run is not None and Path(live.run_dir).name == run.name
    free = not busy
    return [
        gr.update(interactive=free),  # prepare
        gr.update(interactive=free and run is not None),  # start
        gr.update(interactive=free and resumable),  # resume
        gr.update(interactive=busy),  # stop
        gr.update(interactive=free and run is not None),  # evaluate
        gr.update(interactive=free and run is not None),  # ask
        gr.update(interactive=free and adapter),  # merge
        gr.update(interactive=run is not None and not own_job),  # delete
        gr.update(interactive=free and adapter),  # push
    ]


def stop_job(run: str | None = None):
    """Stop the running job (a training saves its adapter so far, an evaluation keeps what it scored)."""
    if not JOBS.stop():
        gr.Info("No job is running.")
    return status_text(run)


def _wait_for_job(run: str | None, job: JobState, every_s: float = 0.5):
    """Yield the status area's text while ``job`` (as ``submit`` returned it) runs: the handler that started it
    shows its progress, and stops waiting when that job ends, whatever another user starts next."""
    while JOBS.job_running(job.job_id):
        yield status_text(run)
        JOBS.wait(every_s)
    yield status_text(run)


def _ended(job: JobState) -> tuple[JobState, JobOutcome | None]:
    """``job``'s final state and outcome (its own, not those of a job another user started since)."""
    while JOBS.job_running(job.job_id):
        JOBS.wait(0.5)
    return JOBS.result(job.job_id) or (JOBS.state(), JOBS.outcome())


def _finished(job: JobState) -> JobOutcome:
    """The outcome of ``job``, or its failure as a gr.Error naming what to change."""
    state, outcome = _ended(job)
    if state.status == "failed":
        raise _error(state.error or state.message or f"the {job.kind} job failed")
    return outcome if outcome is not None else JobOutcome(state.status, state.message)


# --- Prepare -------------------------------------------------------------------------------------------------------
@takes_fields("prepare", leave_out=OPERATOR_FETCH_FIELDS)
def do_prepare(run_name: str = "", force: bool = False, **settings: Any):
    """Prepare as a job (progress in the status area, Stop stops it); yields (sources, summary, status, run picker).

    A failure is shown in the summary (and a toast), not raised: an event that raises marks every output with an
    error badge, and the run picker is one of them."""
    from kinject.prepare import NoUsableSourceError, prepare

    name = (run_name or "").strip() or time.strftime("run-%Y%m%d-%H%M%S")

    def failed(message: str, rows: list[dict[str, Any]] | None = None):
        gr.Warning(message)
        return _rows_table(rows or []), f"**Nothing prepared.** {message}", status_text(None), gr.skip()

    try:
        run = _run(name)
        config = PrepareConfig(**section_configs("prepare", settings))
        # Which addresses may be fetched is the operator's choice, whatever the request says.
        config = replace(config, fetch=OPERATOR.fetch_policy(config.fetch))
        RunDir.check_writable(run.path)
    except gr.Error as exc:
        yield failed(str(exc.message))
        return
    except (ConfigError, RunError) as exc:
        yield failed(app_text(str(exc)))
        return
    try:
        RunDir.check_new(run.path, force)
    except RunError:
        yield failed(
            f"A run named {name} exists already: choose another Run name, or tick “Replace an existing run of "
            "that name”."
        )
        return

    def work(recorder) -> JobOutcome:
        try:
            result = prepare(config, run.path, force=force, progress=recorder)
        except NoUsableSourceError as exc:
            return JobOutcome("failed", "No usable source: every URL and file failed (see the table).", exc.rows)
        return JobOutcome("done", f"prepared: {sum(r['status'] == 'ok' for r in result.rows)} sources", result)

    try:
        job = JOBS.submit(run, "prepare", work, persist=False)
    except JobBusyError as exc:
        yield failed(f"Prepare must wait: {exc}. Press Stop to stop it.")
        return
    for text in _wait_for_job(name, job):
        yield gr.skip(), "Preparing… (progress above; Stop stops it)", text, gr.skip()
    state, outcome = _ended(job)
    if state.status != "done" or outcome is None:
        rows = outcome.value if outcome is not None and isinstance(outcome.value, list) else []
        yield failed(app_text(state.error or state.message or state.status), rows)
        return
    result = outcome.value
    s = result.stats
    ok = sum(r["status"] == "ok" for r in result.rows)
    summary = (
        f"**{name}**: {ok}/{len(result.rows)} sources used · {s.corpus_tokens:,} tokens · {s.blocks} blocks of "
        f"{s.block_size} · packing efficiency {s.packing_efficiency:.1%}\n\n"
        f"CLI equivalent: `{prepare_command(config, run.path, force)}`"
    )
    yield _rows_table(result.rows), summary, status_text(name), _runs_update(name)


def _rows_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r.get(c, "") for c in SOURCE_COLUMNS] for r in rows]


# --- Train ---------------------------------------------------------------------------------------------------------
def preset_values(preset: str) -> list[Any]:
    """The values a preset gives its fields, in the order of ``PRESET_FIELDS`` (train, then blocks)."""
    train, blocks = TrainConfig(preset=preset), training_blocks(None, preset)
    return [getattr(train, k) for k in PRESET_FIELDS["train"]] + [getattr(blocks, k) for k in PRESET_FIELDS["blocks"]]


def apply_preset(preset: str) -> list[Any]:
    """The preset's values for the form's fields, and the preset they now show (the form's ``shown_preset``)."""
    return [*preset_values(preset), preset]


@takes_fields("train")
def start_training(run: str | None = None, shown_preset: str | None = None, **settings: Any):
    """Start a training of ``run`` with the form's settings; returns the equivalent command."""
    return _start(run, _preset_settings(settings, shown_preset), resume=False)


@takes_fields("train")
def resume_training(run: str | None = None, shown_preset: str | None = None, **settings: Any):
    """Resume ``run``'s training from its last checkpoint with its saved configuration (the form's
    "Eval at end" and evaluation settings still apply)."""
    return _start(run, _preset_settings(settings, shown_preset), resume=True)


def _preset_settings(settings: dict[str, Any], shown: str | None) -> dict[str, Any]:
    """Settings with the chosen preset's values where a field still shows another preset's value.

    In the browser, choosing a preset fills the form with its values (``shown`` follows it), so nothing changes
    here. An API call that names a preset sends the fields it leaves out with the values the form shows, those of
    ``shown``: they mean "not set", and the chosen preset fills them."""
    preset, shown = settings.get("preset") or DEFAULT_PRESET, shown or DEFAULT_PRESET
    if preset == shown:
        return settings
    names = PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"]
    showing = dict(zip(names, preset_values(shown), strict=True))
    chosen = dict(zip(names, preset_values(preset), strict=True))
    return {k: chosen[k] if k in showing and v == showing[k] else v for k, v in settings.items()}


def _start(name: str | None, settings: dict[str, Any], resume: bool):
    """Start (or resume) training as the job; the status area, the loss plot and the buttons follow it."""
    run = _run(name)
    try:
        configs = section_configs("train", settings)
        config, blocks = configs["train"], configs["blocks"]
        if resume and run.is_run() and not run.section("train"):
            raise gr.Error(f"Run {run.name} was never trained, so there is nothing to resume: press Start.")
        # Before the job starts: the command's baseline is the run's config.yaml, which training then rewrites.
        command = train_command(
            run.path,
            config,
            blocks,
            resume,
            evaluation=configs["eval"],
            generation=configs["generation"],
            augment=configs["augment"],
        )
        JOBS.start(
            run,
            config,
            resume=resume,
            blocks=None if resume else blocks,
            augment=configs["augment"],
            evaluation=configs["eval"],
            generation=configs["generation"],
        )
    except JobBusyError as exc:
        raise gr.Error(f"Training must wait: {exc}. Press Stop to stop it.") from None
    except (ConfigError, RunError) as exc:
        raise _error(str(exc)) from exc
    return f"CLI equivalent: `{command}`"


def loss_figure(run: RunDir):
    """The training loss by step: integer steps, a marker on every point (so a single point shows), 3 digits."""
    rows = [r for r in run.read_metrics() if "loss" in r and "step" in r]
    if not rows:
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    fig = Figure(figsize=(9, 3), dpi=100)
    ax = fig.subplots()
    steps, losses = [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]
    ax.plot(steps, losses, marker="o" if len(rows) <= 60 else None, markersize=3, color="#2a7ab9")
    if steps[-1] - steps[0] < 8:  # few steps: a tick on each (a locator would add fractions)
        ax.set_xticks(range(steps[0] - 1, steps[-1] + 2))
        ax.set_xlim(steps[0] - 0.5, steps[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _plot_key(run: RunDir) -> str:
    """What the loss plot shows, so a poll redraws it only when a step was logged."""
    rows = run.read_metrics()
    return f"{run.path}:{len(rows)}:{rows[-1].get('step') if rows else ''}"


def poll(run: str | None = None, shown: str | None = None):
    """The status area, the loss plot (only when it changed), whether to keep polling, and the buttons' states."""
    active = JOBS.running()  # read first: if the job ends meanwhile, the view below already shows it ended
    text = status_text(run)
    plot, key = None, ""
    if run:
        run_dir = _run(run)
        key = _plot_key(run_dir)
        plot = gr.skip() if key == shown else loss_figure(run_dir)
    return (text, plot, key, gr.Timer(active=active), *button_states(run))


def run_settings(run: str | None = None) -> list[Any]:
    """The Train form's values for run ``run``: its saved config.yaml read back into the same fields (what its job
    ran with, running, stopped or done), or the app's defaults with the run's blocks before its first training."""
    values = _form_defaults()
    if run and _run(run).is_run():
        saved = _run(run).read_config()
        try:
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
        except ConfigError as exc:
            gr.Warning(f"Run {run}'s config.yaml does not read back ({exc}); the form shows the defaults.")
            values = _form_defaults()
    infos = {i.name: i for cls in TRAIN_SECTIONS.values() for i in describe_fields(cls)}
    shown = [_form_value(infos[name], values[name]) for name in TRAIN_FIELDS]
    return [*shown, values["preset"]]


def _form_defaults() -> dict[str, Any]:
    """What the Train form shows before a run is chosen: the default preset's values and the app's defaults."""
    values = {i.name: i.default for cls in TRAIN_SECTIONS.values() for i in describe_fields(cls)}
    values.update(zip(PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"], preset_values(DEFAULT_PRESET), strict=True))
    return {**values, **APP_DEFAULTS}


def _form_value(info: FieldInfo, value: Any) -> Any:
    """A config value as its control holds it (lists as lines, unset text as blank)."""
    if info.kind == "list":
        return "\n".join(value or [])
    if info.kind not in ("int", "float", "bool") and value is None:
        return ""
    return value


# --- Evaluate and ask ----------------------------------------------------------------------------------------------
@takes_fields("eval")
def do_evaluate(run: str | None = None, **settings: Any):
    """Evaluate as a job: yields the status area while it runs, then the scores, chart and answers. Stop keeps the
    probes answered so far (scored and written, marked as stopped)."""
    from kinject.eval import EvalStopped, evaluate

    run_dir = _run(run)
    try:
        run_dir.require()
        configs = section_configs("eval", settings)
    except (ConfigError, RunError) as exc:
        raise _error(str(exc)) from exc

    def work(recorder) -> JobOutcome:
        try:
            report = evaluate(run_dir, configs["eval"], recorder, configs["generation"])
        except EvalStopped as exc:
            return JobOutcome("stopped", str(exc))
        answered = len(report.probes)
        if report.stopped:
            return JobOutcome("stopped", f"evaluation stopped: {answered} probes scored and written", report)
        return JobOutcome("done", f"evaluation written: {answered} probes", report)

    try:
        job = JOBS.submit(run_dir, "evaluate", work)
    except JobBusyError as exc:
        raise gr.Error(f"Evaluation must wait: {exc}. Press Stop to stop it.") from None
    for text in _wait_for_job(run, job):
        yield gr.skip(), gr.skip(), gr.skip(), text
    _finished(job)
    yield (*show_eval(run), status_text(run))


ANSWER_COLUMNS = ["id", "kind", "question or prompt", "accepted", "base", "", "adapter", " "]
ANSWER_WIDTHS = ["9%", "8%", "20%", "11%", "22%", "3%", "24%", "3%"]
_COUNTS = {
    "knowledge_accuracy": ("knowledge_correct", "knowledge_scored"),
    "retention_accuracy": ("retention_correct", "retention_scored"),
    "eos_rate": ("chat_ended", "chat_answers"),
}
SCORE_LABELS = {
    "knowledge_accuracy": "knowledge (facts of your pages)",
    "retention_accuracy": "retention (general facts and chat)",
    "knowledge_logprob": "knowledge log-prob (closer to 0 is better)",
    "eos_rate": "answers that ended their turn",
}


def _score(scores: dict[str, Any] | None, key: str) -> str:
    """A score rounded, with its counts beside a fraction: "0.57 (4/7)"; "–" when not measured."""
    value = (scores or {}).get(key)
    if value is None:
        return "–"
    if key in _COUNTS:
        hit, n = (scores.get(k) for k in _COUNTS[key])
        return f"{value:.2f} ({hit}/{n})"
    return f"{value:.3f}"


def eval_summary(data: dict[str, Any]) -> str:
    """The scores first: base vs adapter with counts, forgetting, and how the evaluation was run."""
    s = data.get("settings") or {}
    counts = s.get("counts") or {}
    lines = [
        f"**Evaluated** {data.get('created_at', '')} · model `{data.get('model', '')}` · "
        f"{counts.get('knowledge', 0)} knowledge and {counts.get('retention', 0)} retention probes"
        + (" (the quick set)" if s.get("quick") else "")
        + (f" · answers of at most {s['generation']['max_new_tokens']} tokens" if s.get("generation") else ""),
    ]
    if data.get("note"):
        lines.append(f"> {data['note']}")
    if learnt_nothing(s):
        lines.append(f"> ⚠️ **The adapter learnt nothing within the forgetting bound.** {s['guard']['reason']}")
    elif gain := no_gain_line(data.get("base"), data.get("adapter")):
        lines.append(f"> ⚠️ **{gain}**")
    lines += ["", "| score | base | adapter |", "|---|---:|---:|"]
    for key, label in SCORE_LABELS.items():
        lines.append(f"| {label} | {_score(data.get('base'), key)} | {_score(data.get('adapter'), key)} |")
    if data.get("open_book"):
        ob = _score(data["open_book"], "knowledge_accuracy")
        lines.append(f"| knowledge, open book (the base with your pages in its prompt) | {ob} | |")
    f = data.get("forgetting")
    if f:
        lines += [
            "",
            f"**Forgetting:** KL(base ‖ adapter) {f['kl_mean']:.3g} nats/token (max {f['kl_max']:.3g}) · perplexity "
            f"on general text {f['base_ppl']:.1f} → {f['adapter_ppl']:.1f} (ratio {f['ppl_ratio']:.2f})",
        ]
    if contamination_line(data.get("contamination")):
        lines.append(f"**Contamination:** {contamination_line(data.get('contamination'))}")
    return "\n".join(lines)


def _mark(answer: dict[str, Any] | None) -> str:
    return {True: "✓", False: "✗"}.get((answer or {}).get("correct"), "–")


def eval_answers(data: dict[str, Any]) -> list[list[str]]:
    """Every probe's answers side by side, as plain text (a table cell shows text, never renders markdown)."""
    rows = []
    for p in data.get("probes") or []:
        asked = p.get("question") if p.get("form") != "completion" else f"{p.get('prompt', '')} …"
        base, adapter = p.get("base"), p.get("adapter")
        rows.append(
            [
                p.get("id", ""),
                p.get("kind", ""),
                asked or "",
                " / ".join(p.get("answers") or []),
                (base or {}).get("text", ""),
                _mark(base),
                (adapter or {}).get("text", "") if adapter else "",
                _mark(adapter),
            ]
        )
    return rows


def show_eval(run: str | None = None):
    """The Evaluate tab's results: scores (with counts), the chart, the answers."""
    if not run:
        return "No run selected.", None, []
    run_dir = _run(run)
    try:
        data = run_dir.read_eval()
    except (OSError, ValueError) as exc:
        return f"The evaluation of {run} is unreadable ({exc}); evaluate again.", None, []
    if not data:
        return "No evaluation yet for this run: press Evaluate.", None, []
    plot = run_dir.eval_plot()
    return eval_summary(data), str(plot) if plot else None, eval_answers(data)


def _must_wait(action: str) -> str | None:
    """Why ``action`` must wait, naming the job that holds the model, or None when nothing runs."""
    if not JOBS.running():
        return None
    state = JOBS.state()
    eta = f", about {_seconds(state.eta_s)} left" if state.eta_s else ""
    return f"{action} must wait: {describe_job(state)} is running{eta}. Press Stop to stop it, or wait."


@takes_fields("ask")
def do_ask(run: str | None = None, question: str = "", **settings: Any):
    from kinject.generate import answer, load_for_run, shown_answer

    run_dir = _run(run)
    if not (question or "").strip():
        raise gr.Error("Type a question in the Question box.")
    if why := _must_wait("Ask"):
        raise gr.Error(why)
    try:
        config = section_configs("ask", settings)["generation"]
        loaded = load_for_run(run_dir, with_adapter=run_dir.has_adapter())
    except (ConfigError, RuntimeError, RunError) as exc:
        raise _error(str(exc)) from exc
    base = shown_answer(answer(loaded, question, config, base=True))
    adapted = "(no adapter trained for this run yet)"
    if loaded.has_adapter:
        adapted = shown_answer(answer(loaded, question, config))
    return base, adapted


# --- Chat ----------------------------------------------------------------------------------------------------------
CHAT = choose_backend()
TALK_TO = ["adapter", "base", "merged"]


def _text(content: Any) -> str:
    """A chatbot message's text (gradio may hand back content as parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, list):
        return "".join(_text(c) for c in content)
    return "" if content is None else str(content)


def _conversation(history: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": _text(m.get("content"))} for m in history or []]


@takes_fields("ask")
def send_chat(
    run: str | None = None,
    message: str = "",
    talk_to: str = "adapter",
    compare: bool = False,
    left: list[dict[str, Any]] | None = None,
    right: list[dict[str, Any]] | None = None,
    **settings: Any,
):
    """Stream the answer of the chosen model (and, with ``compare``, of the base beside it) through TGI's protocol:
    kinject's embedded server by default, the KINJECT_ENDPOINT server when set. Yields (left, right, cleared box)."""
    run_dir = _run(run)
    if not (message or "").strip():
        raise gr.Error("Type a message in the Message box.")
    if talk_to not in TALK_TO:
        raise gr.Error(f"Talk to one of {', '.join(TALK_TO)}.")
    try:
        generation = section_configs("ask", settings)["generation"]
    except ConfigError as exc:
        raise _error(str(exc)) from exc
    waiting = _conversation(left) + [
        {"role": "user", "content": message},
        {"role": "assistant", "content": _chat_wait_note(run_dir)},
    ]
    found: dict[str, Any] = {}
    starting = threading.Thread(target=_find_target, args=(run_dir, talk_to == "merged", found), daemon=True)
    starting.start()
    starting.join(0.3)
    if starting.is_alive():  # loading a model into the chat server: say so instead of a silent wait
        yield waiting, right or [], ""
        starting.join()
    if "error" in found:
        raise _error(f"Chat is not available: {found['error']}")
    target = found["target"]
    names = {"base": None, "adapter": target.adapter, "merged": target.merged}
    if talk_to != "base" and names[talk_to] is None:
        why = "train one first (Start, Train tab)" if talk_to == "adapter" else "merge it first (Merge, Runs tab)"
        raise gr.Error(f"Run {run_dir.name} has no {talk_to} model: {why}, or choose “base” in Talk to.")
    sides = [(left, names[talk_to])] + ([(right, None)] if compare else [])
    histories = [_conversation(h) + [{"role": "user", "content": message}] for h, _ in sides]
    for i, (_, model) in enumerate(sides):
        asked = list(histories[i])
        histories[i].append({"role": "assistant", "content": ""})
        try:
            for piece in stream_chat(target.endpoint_of(model), model, asked, generation):
                histories[i][-1]["content"] += piece
                yield histories[0], histories[1] if compare else right or [], ""
        except BackendError as exc:
            raise gr.Error(str(exc)) from exc
    yield histories[0], histories[1] if compare else right or [], ""


def _find_target(run_dir: RunDir, merged: bool, found: dict[str, Any]) -> None:
    """The chat backend's target for ``run_dir`` (starting its server when needed), or the error, into ``found``."""
    try:
        found["target"] = CHAT.target(run_dir, merged=merged)
    except (RunError, BackendError, RuntimeError) as exc:
        found["error"] = str(exc)


def _chat_wait_note(run_dir: RunDir) -> str:
    """What a chat waits for while its server starts: the model being loaded, and a job sharing the machine."""
    try:
        model = from_dict(ModelConfig, run_dir.section("model"), "model").model
    except (ConfigError, RunError):
        model = "the run's model"
    server = "kinject's embedded chat server" if CHAT.name == "embedded" else f"the {CHAT.name} chat server"
    note = f"⏳ Waiting for {server} to load {model} with run {run_dir.name}'s adapter (first message, new weights)…"
    if JOBS.running():
        note += f" {describe_job(JOBS.state()).capitalize()} is running beside it, so this takes longer."
    return note


def chat_sides(compare: bool):
    """The right-hand chatbot shows only when comparing."""
    return gr.update(visible=bool(compare), label="Base model")


AUGMENT_COLUMNS = ["kind", "passage", "asked or instruction", "generated", "kept", "why not"]


def augmentation_table(run: str | None = None) -> list[list[Any]]:
    """Every generated row of the run's augmentation (newest set of each kind), kept or not, and why."""
    if not run:
        return []
    run_dir = _run(run)
    rows, seen = [], set()
    for info in run_dir.augmentation_infos():
        if info.get("kind") in seen:
            continue
        seen.add(info.get("kind"))
        loaded = run_dir.load_augmentation(info["key"])
        for r in loaded[0] if loaded else []:
            asked = r.get("question") or r.get("instruction", "")
            made = r.get("text") or r.get("answer", "")
            rows.append(
                [r["kind"], r.get("passage", ""), asked, made, "yes" if r.get("kept") else "no", r.get("reason") or ""]
            )
    return rows


RUNS_COLUMNS = ["run", "date", "model", "preset", "steps", "final loss", "knowledge", "retention", "KL", "status"]


def _run_row(name: str) -> list[Any]:
    """One run's row in the Runs tab: when, what model and recipe, how far it trained, and its scores."""
    run = RunDir(RUNS_ROOT / name)
    config = run.read_config()
    state = JOBS.status_of(run)
    meta = run.read_adapter_meta() if run.has_adapter() else {}
    ev = run.read_eval() or {}
    train = config.get("train") or {}
    losses = [r["loss"] for r in run.read_metrics() if "loss" in r]
    steps = f"{meta['step']}/{meta['total_steps']}" if meta.get("step") is not None else ""
    if not steps and state is not None and state.total:
        steps = f"{state.step}/{state.total}"

    def pair(key: str) -> str:
        base, adapter = _score(ev.get("base"), key), _score(ev.get("adapter"), key)
        return "" if not ev else (f"{base} → {adapter}" if ev.get("adapter") else base)

    kl = (ev.get("forgetting") or {}).get("kl_mean")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.config_path.stat().st_mtime))
    return [
        name,
        when,
        (config.get("model") or {}).get("model", ""),
        train.get("preset", ""),
        steps,
        f"{losses[-1]:.3f}" if losses else "",
        pair("knowledge_accuracy"),
        pair("retention_accuracy"),
        "" if kl is None else f"{kl:.3g}",
        state.status if state else "prepared",
    ]


def runs_table():
    """Every run, newest first; a damaged run shows why instead of hiding the others."""
    rows = []
    for name in list_runs():
        try:
            rows.append(_run_row(name))
        except (OSError, ValueError, KeyError, TypeError, RunError) as exc:
            rows.append([name, "", "", "", "", "", "", "", "", f"unreadable: {exc}"])
    return rows


def delete_run(run: str | None = None, confirm: str = ""):
    """Delete a run folder once its name is typed to confirm; never the run a job is working on.

    A refusal is a warning that leaves the outputs as they are: raised, it would mark the run picker with an error
    badge that hides the selected run."""
    run_dir = _run(run)
    refusal = None
    live = JOBS.state()
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
        return gr.skip(), gr.skip(), gr.skip()
    gr.Info(f"Deleted run {run_dir.name}.")
    return _runs_update(), runs_table(), ""


def compare_runs(first: str | None = None, second: str | None = None) -> str:
    """Two runs' settings and evaluations side by side, then each probe both answered."""
    if not first or not second:
        return "Choose two runs to compare."
    data = []
    for name in (first, second):
        run_dir = _run(name)
        try:
            data.append((run_dir.read_config(), run_dir.read_eval() or {}, _run_row(name)))
        except (OSError, ValueError, RunError) as exc:
            raise _error(f"Run {name} is unreadable: {exc}") from exc
    head = ["model", "preset", "steps", "final loss"]
    lines = [f"| | {first} | {second} |", "|---|---|---|"]
    for i, label in enumerate(head, start=2):
        lines.append(f"| {label} | {data[0][2][i]} | {data[1][2][i]} |")
    for key, label in SCORE_LABELS.items():
        cells = [_score(ev.get("adapter") or ev.get("base"), key) if ev else "not evaluated" for _, ev, _ in data]
        lines.append(f"| {label} (adapter) | {cells[0]} | {cells[1]} |")
    kls = [(ev.get("forgetting") or {}).get("kl_mean") for _, ev, _ in data]
    lines.append("| KL(base ‖ adapter) | " + " | ".join("–" if k is None else f"{k:.3g}" for k in kls) + " |")
    answers = [{p["id"]: p for p in ev.get("probes") or []} for _, ev, _ in data]
    shared = [pid for pid in answers[0] if pid in answers[1]]
    if shared:
        lines += ["", "| probe | kind | " + f"{first} | {second} |", "|---|---|---|---|"]
        for pid in shared:
            cells = []
            for side in answers:
                answer = side[pid].get("adapter") or side[pid].get("base") or {}
                cells.append(f"{_mark(answer)} {_cell_text(answer.get('text', ''))}")
            lines.append(f"| {_cell_text(pid)} | {answers[0][pid]['kind']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _cell_text(text: str, limit: int = 160) -> str:
    """Text safe inside a markdown table cell: cut, one line, markdown characters escaped."""
    text = " ".join((text or "").split())
    text = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


def source_choices(run: str | None = None) -> Any:
    """The selected run's sources that gave text, for the Sources view."""
    if not run:
        return gr.update(choices=[], value=None)
    rows = [r for r in _run(run).read_sources() if r.get("status") == "ok"]
    names = [r["input"] for r in rows]
    return gr.update(choices=names, value=names[0] if names else None)


SOURCE_AUGMENT_COLUMNS = ["passage", "kind", "asked or instruction", "generated", "kept", "why not"]


def source_view(run: str | None = None, source: str | None = None):
    """One source's extracted text as training will see it, and what augmentation generated from its passages."""
    if not run or not source:
        return "", []
    run_dir = _run(run)
    try:
        docs = [d for d in run_dir.load_corpus().to_list() if d.get("source") == source]
    except RunError as exc:
        raise _error(str(exc)) from exc
    if not docs:
        return f"(no text kept from {source}: it was a duplicate, or its text did not pass the cleaning)", []
    from kinject.augment import split_passages

    everything = run_dir.load_corpus().to_list()
    passages = {p.id for p in split_passages(everything) if p.source == source}
    rows = [r[1:2] + r[:1] + r[2:] for r in augmentation_table(run) if r[1] in passages]
    return "\n\n".join(f"{d.get('title') or source}\n\n{d['text']}" for d in docs), rows


def do_merge(run: str | None = None):
    """Merge the run's adapter into a 16-bit copy of its base model, as a job (for TGI or a merged chat)."""
    from kinject.merge import merge

    run_dir = _run(run)
    try:
        run_dir.require_adapter()
    except RunError as exc:
        raise _error(str(exc)) from exc
    try:
        job = JOBS.submit(
            run_dir, "merge", lambda recorder: JobOutcome("done", f"merged into {merge(run_dir, recorder)}")
        )
    except JobBusyError as exc:
        raise gr.Error(f"Merge must wait: {exc}. Press Stop to stop it.") from None
    yield from _wait_for_job(run, job)
    _finished(job)


# --- Publish -------------------------------------------------------------------------------------------------------
@takes_fields("push", leave_out=("public",))
def do_push(run: str | None = None, token: str = "", private: bool = True, **settings: Any):
    """Push the run's adapter and model card to the Hub as a job; yields (status, link to the result).

    The token lives in this call and the job's closure only: never in the status, a file or a message."""
    from kinject.publish import PublishError, push, scrub

    run_dir = _run(run)
    settings = {k: v for k, v in settings.items() if v not in (None, "")}
    try:
        config = section_configs("push", {**settings, "public": not private})["publish"]
    except ConfigError as exc:
        raise _error(str(exc)) from None
    if not config.repo:
        raise gr.Error("Give the repository as OWNER/NAME in the Repository field.")
    token = (token or "").strip() or None
    if token is None and not OPERATOR.push_with_server_token:
        raise gr.Error(
            "Paste a Hugging Face write token into the token field (huggingface.co/settings/tokens): this server "
            "does not push with its own token."
        )

    def work(recorder) -> JobOutcome:
        try:
            result = push(run_dir, config, token, recorder, server_token=OPERATOR.push_with_server_token)
        except PublishError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever it was, its message must not carry the token
            raise PublishError(scrub(f"{type(exc).__name__}: {exc}", token)) from None
        kind = "private" if result.private else "public"
        what = "nothing changed, no new commit" if result.unchanged else f"pushed to {result.repo_id} ({kind})"
        return JobOutcome("done", f"{what}: {result.url}" + (f" ({result.note})" if result.note else ""), result)

    try:
        # persist=False: a push leaves the run's status.json (its training's) as it was.
        job = JOBS.submit(run_dir, "push", work, persist=False)
    except JobBusyError as exc:
        raise gr.Error(f"Push must wait: {exc}. Press Stop to stop it.") from None
    for text in _wait_for_job(run, job):
        yield text, gr.update()
    outcome = _finished(job)
    result = outcome.value
    link = f"**Pushed:** [{result.repo_id}]({result.url}) · [commit]({result.commit_url})" if result else ""
    yield f"{status_text(run)}\n\n**Push {outcome.status}:** {outcome.message}", link


def card_preview(run: str | None = None, repo: str = "") -> str:
    """The model card the push would upload (sources, training, evaluation, usage)."""
    from kinject.publish import model_card

    run_dir = _run(run)
    if not run_dir.has_adapter():
        return "This run has no adapter yet: train it first (Train tab)."
    return model_card(run_dir, repo.strip() or "OWNER/NAME")


# --- Layout --------------------------------------------------------------------------------------------------------
PREPARE_ROWS = [["model", "block_size"]]
TRAIN_ROWS = [
    ["preset", "quantization", "eval_at_end", "quick"],
    ["epochs", "learning_rate", "lora_r", "lora_alpha", "batch_size", "text_format"],
]
# The Train form: training, its blocks and augmentation, and the evaluation "Eval at end" runs.
TRAIN_SECTIONS = {"train": TrainConfig, "blocks": BlocksConfig, "augment": AugmentConfig, "eval": EvalConfig}
TRAIN_FIELDS = [name for row in TRAIN_ROWS for name in row] + [
    i.name
    for cls in TRAIN_SECTIONS.values()
    for i in describe_fields(cls)
    if not any(i.name in row for row in TRAIN_ROWS)
]
# Where the app's defaults differ from the CLI's: evaluate when training ends, on the quick set on a CPU.
APP_DEFAULTS = {"eval_at_end": True, "quick": "auto"}
EVAL_ROWS = [["probes", "auto_probes", "max_new_tokens", "quick"]]
ASK_ROWS = [["max_new_tokens"]]
PUBLISH_ROWS = [["repo", "merged"]]


def fetch_policy_text(operator: AppConfig) -> str:
    """What the server may fetch, as the operator set it at launch (shown read-only in the Prepare tab)."""
    how = "`--allow-private-urls` / `KINJECT_ALLOW_PRIVATE_URLS=1`, `--allowed-networks` / `KINJECT_ALLOWED_NETWORKS`"
    if operator.allow_private_urls:
        return f"**Private and loopback addresses: allowed** by the operator at launch ({how})."
    networks = ", ".join(operator.allowed_networks)
    except_ = f", except {networks} (allowed by the operator)" if networks else ""
    return (
        f"Private, loopback and link-local addresses are refused{except_}. Only the operator can change this, at "
        f"launch ({how})."
    )


def build_ui(operator: AppConfig | None = None) -> gr.Blocks:
    """The app; ``operator`` holds the launch settings (by default those of the KINJECT_* environment)."""
    global OPERATOR
    OPERATOR = operator if operator is not None else AppConfig.from_env(os.environ)
    with gr.Blocks(title="kinject") as demo:
        gr.Markdown(
            "# kinject\nTeach a chat model new facts from a few web pages with (Q)LoRA, then check with numbers "
            "that it learnt them and still chats. Prepare → Train → Evaluate → Ask."
        )
        run = gr.Dropdown(label="Run", choices=list_runs(), value=None, allow_custom_value=False, interactive=True)
        with gr.Row():
            status = gr.Markdown("No run selected.", elem_id="job-status")
            stop_btn = gr.Button("Stop", variant="stop", scale=0, min_width=120, interactive=False)
        timer = gr.Timer(1.0, active=False)
        with gr.Tab("Prepare"):
            gr.Markdown(
                "Fetch pages (one URL per line) and/or upload files; kinject strips menus, banners and "
                "footers, deduplicates, tokenizes and packs the text into training blocks."
            )
            gr.Markdown(fetch_policy_text(OPERATOR), elem_id="fetch-policy")
            prepare_form = settings_form(
                VERB_SECTIONS["prepare"],
                [["urls"], ["files"], *PREPARE_ROWS],
                leave_out=OPERATOR_FETCH_FIELDS,
                made={
                    "urls": lambda: gr.Textbox(
                        label="URLs", lines=5, placeholder="https://example.com/announcement\n..."
                    ),
                    "files": lambda: gr.File(
                        label="Files (.html .htm .txt .md .pdf)", file_count="multiple", type="filepath"
                    ),
                },
            )
            with gr.Row():
                run_name = gr.Textbox(label="Run name", placeholder="aws-summit (default: run-<date>)")
                force = gr.Checkbox(label="Replace an existing run of that name", value=False)
            prepare_btn = gr.Button("Prepare", variant="primary")
            summary = gr.Markdown()
            table = gr.Dataframe(headers=SOURCE_COLUMNS, label="Sources", wrap=True)
        with gr.Tab("Train"):
            train_form = settings_form(TRAIN_SECTIONS, TRAIN_ROWS, values=_form_defaults())
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary")
                resume_btn = gr.Button("Resume from checkpoint", interactive=False)
            gr.Markdown("Stop (above) saves the adapter trained so far; Resume continues the run's saved settings.")
            cli = gr.Markdown()
            loss_plot = gr.Plot(label="Training loss")
            plot_key = gr.State("")  # what the plot shows, so a poll redraws it only when a step was logged
            with gr.Accordion("Generated training data (augmentation)", open=False):
                show_data = gr.Button("Show")
                data_df = gr.Dataframe(headers=AUGMENT_COLUMNS, wrap=True, label="Paraphrases, questions, replay")
        with gr.Tab("Evaluate"):
            gr.Markdown(
                "Base vs adapter on knowledge probes (yours or generated from the corpus) and on retention "
                "probes; forgetting as KL divergence and perplexity ratio on general data."
            )
            eval_form = settings_form(
                VERB_SECTIONS["eval"],
                EVAL_ROWS,
                made={"probes": lambda: gr.File(label="Probe file (JSONL, optional)", type="filepath")},
            )
            eval_btn = gr.Button("Evaluate", variant="primary")
            eval_md = gr.Markdown(elem_id="eval-scores")
            eval_png = gr.Image(label="Scores", type="filepath", height=360)
            with gr.Accordion("Answers, probe by probe", open=False, elem_id="eval-answers"):
                eval_answers = gr.Dataframe(
                    headers=ANSWER_COLUMNS,
                    column_widths=ANSWER_WIDTHS,
                    datatype="str",
                    wrap=True,
                    max_height=700,
                    interactive=False,
                    label="Answers",
                )
        with gr.Tab("Ask"):
            question = gr.Textbox(label="Question", value="What GPUs do Amazon EC2 P5 instances have?")
            ask_form = settings_form(VERB_SECTIONS["ask"], ASK_ROWS)
            ask_btn = gr.Button("Ask both", variant="primary")
            with gr.Row():
                base_answer = gr.Textbox(label="Base model", lines=8)
                adapter_answer = gr.Textbox(label="With adapter", lines=8)
        with gr.Tab("Chat"):
            gr.Markdown(
                "Chat with the run's adapter, its base model or its merged model through TGI's protocol "
                "(kinject's embedded server, started on the first message; or your own TGI, vLLM or SGLang "
                "server when `KINJECT_ENDPOINT` is set). Compare mode sends the same conversation to the base "
                "too and shows both answers side by side."
            )
            with gr.Row():
                talk_to = gr.Radio(TALK_TO, value="adapter", label="Talk to")
                compare = gr.Checkbox(value=False, label="Compare with the base model")
            chat_form = settings_form(VERB_SECTIONS["ask"], [["max_new_tokens", "temperature", "top_p"]])
            with gr.Row():
                chat_left = gr.Chatbot(label="Chat", height=380)
                chat_right = gr.Chatbot(label="Base model", height=380, visible=False)
            with gr.Row():
                chat_box = gr.Textbox(label="Message", placeholder="Ask about your pages...", scale=4)
                chat_btn = gr.Button("Send", variant="primary", scale=1)
                clear_btn = gr.Button("Clear", scale=1)
        with gr.Tab("Runs"):
            refresh = gr.Button("Refresh")
            runs_df = gr.Dataframe(headers=RUNS_COLUMNS, label="Runs", wrap=True, interactive=False)
            with gr.Row():
                merge_btn = gr.Button("Merge the selected run's adapter into its base", interactive=False)
                confirm_box = gr.Textbox(label="Type the run's name to confirm", scale=2)
                delete_btn = gr.Button("Delete the selected run", variant="stop", interactive=False)
            with gr.Accordion("Compare two runs", open=False):
                with gr.Row():
                    # Custom values allowed: runs made after the page loaded are valid (checked when compared).
                    first = gr.Dropdown(label="First run", choices=list_runs(), allow_custom_value=True)
                    second = gr.Dropdown(label="Second run", choices=list_runs(), allow_custom_value=True)
                compare_btn = gr.Button("Compare")
                compare_md = gr.Markdown()
            with gr.Accordion("Sources: the text training sees", open=False):
                source_pick = gr.Dropdown(label="Source", choices=[], allow_custom_value=True)
                source_text = gr.Textbox(label="Extracted text", lines=14, max_lines=30, interactive=False)
                source_df = gr.Dataframe(
                    headers=SOURCE_AUGMENT_COLUMNS, wrap=True, label="Generated from it (augmentation)"
                )
        with gr.Tab("Publish"):
            gr.Markdown(
                "Push the selected run's adapter to the Hugging Face Hub with a model card that records its sources "
                "(with their sha256), the training configuration and the base-vs-adapter scores. Pushing again to "
                "the same repository commits what changed."
            )
            publish_form = settings_form({"publish": PublishConfig}, PUBLISH_ROWS, leave_out=("public",))
            with gr.Row():
                private = gr.Checkbox(
                    value=True, label="Private", info="Create the repository private (an existing one keeps its own)."
                )
                token = gr.Textbox(
                    label="Hugging Face token",
                    type="password",
                    placeholder="hf_..."
                    + (" (empty: the server's HF_TOKEN)" if OPERATOR.push_with_server_token else ""),
                    info="A write token from huggingface.co/settings/tokens; used for this push only, never stored.",
                    scale=2,
                )
            with gr.Row():
                push_btn = gr.Button("Push", variant="primary", interactive=False)
                preview_btn = gr.Button("Preview the model card")
            push_link = gr.Markdown()
            with gr.Accordion("Model card", open=False):
                card_md = gr.Markdown()

        buttons = [prepare_btn, start_btn, resume_btn, stop_btn, eval_btn, ask_btn, merge_btn, delete_btn, push_btn]
        shown_preset = gr.State(DEFAULT_PRESET)
        form_outputs = [*(train_form[k] for k in TRAIN_FIELDS), shown_preset]
        poll_outputs = [status, loss_plot, plot_key, timer, *buttons]
        prepare_btn.click(
            do_prepare,
            [run_name, force],
            [table, summary, status, run],
            inputs_kwargs=prepare_form,
            api_name="prepare",
        )
        # shown_preset: the preset whose values the form shows (see _preset_settings). "input", not "change": the
        # form filled from a run's config.yaml must keep that run's values, not take its preset's.
        preset_outputs = [train_form[k] for k in PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"]]
        train_form["preset"].input(
            apply_preset, train_form["preset"], [*preset_outputs, shown_preset], api_name="preset_values"
        )
        train_inputs = {**train_form, "shown_preset": shown_preset}
        start_btn.click(start_training, [run], cli, inputs_kwargs=train_inputs, api_name="train").success(
            poll, [run, plot_key], poll_outputs, api_name=False
        )
        resume_btn.click(resume_training, [run], cli, inputs_kwargs=train_inputs, api_name="resume").success(
            run_settings, run, form_outputs, api_name=False
        ).success(poll, [run, plot_key], poll_outputs, api_name=False)
        stop_btn.click(stop_job, run, status, api_name="stop")
        timer.tick(poll, [run, plot_key], poll_outputs, api_name="poll", show_progress="hidden")
        run.change(poll, [run, plot_key], poll_outputs, api_name="select_run").then(
            show_eval, run, [eval_md, eval_png, eval_answers], api_name="show_eval"
        ).then(run_settings, run, form_outputs, api_name="run_settings").then(
            source_choices, run, source_pick, api_name=False
        )
        eval_btn.click(
            do_evaluate, [run], [eval_md, eval_png, eval_answers, status], inputs_kwargs=eval_form, api_name="evaluate"
        )
        ask_btn.click(do_ask, [run, question], [base_answer, adapter_answer], inputs_kwargs=ask_form, api_name="ask")
        refresh.click(runs_table, None, runs_df, api_name="runs").then(
            lambda: (_runs_update(None), _runs_update(None)), None, [first, second], api_name=False
        )
        merge_btn.click(do_merge, run, status, api_name="merge")
        push_btn.click(
            do_push, [run, token, private], [status, push_link], inputs_kwargs=publish_form, api_name="push"
        )
        preview_btn.click(card_preview, [run, publish_form["repo"]], card_md, api_name="card")
        delete_btn.click(delete_run, [run, confirm_box], [run, runs_df, confirm_box], api_name="delete_run")
        compare_btn.click(compare_runs, [first, second], compare_md, api_name="compare")
        source_pick.change(source_view, [run, source_pick], [source_text, source_df], api_name="source")
        chat_inputs = [run, chat_box, talk_to, compare, chat_left, chat_right]
        chat_outputs = [chat_left, chat_right, chat_box]
        chat_btn.click(send_chat, chat_inputs, chat_outputs, inputs_kwargs=chat_form, api_name="chat")
        chat_box.submit(send_chat, chat_inputs, chat_outputs, inputs_kwargs=chat_form, api_name=False)
        compare.change(chat_sides, compare, chat_right, api_name=False)
        clear_btn.click(lambda: ([], []), None, [chat_left, chat_right], api_name=False)
        show_data.click(augmentation_table, run, data_df, api_name="augmentation")
        # A reloaded page re-attaches to the running job: list runs, pick the job's run, show its settings in the
        # Train form, restart polling.
        demo.load(
            _on_load, None, [run, runs_df, *form_outputs, *poll_outputs], api_name="load", show_progress="hidden"
        )
    return demo


def _on_load():
    """The page's state on (re)load: the job's run selected (else the newest), its settings, status and buttons."""
    state = JOBS.state()
    names = list_runs()
    selected = Path(state.run_dir).name if state.run_dir and Path(state.run_dir).name in names else None
    selected = selected or (names[0] if names else None)
    return _runs_update(selected), runs_table(), *run_settings(selected), *poll(selected)


MIN_PASSWORD_CHARS = 8

# The most guessed passwords, compared after lowercasing and dropping trailing digits and symbols ("Password1!").
COMMON_PASSWORDS = frozenset(
    {
        "password", "passw0rd", "p@ssw0rd", "qwerty", "qwertyuiop", "letmein", "welcome", "iloveyou", "admin",
        "administrator", "changeme", "secret", "trustno", "monkey", "dragon", "football", "baseball", "sunshine",
        "princess", "master", "login", "abc", "qaz2wsx", "1qaz2wsx", "zaq1xsw2", "default", "kinject",
    }
)  # fmt: skip
# Keyboard rows and the alphabet, forwards (a password that is a stretch of one of these or its reverse is a "run").
_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def password_weakness(user: str, password: str) -> str | None:
    """Why ``password`` is too easy to guess for ``user`` ("only digits", ...), or None if it is acceptable."""
    if len(password) < MIN_PASSWORD_CHARS:
        size = f"{len(password)} characters" if password else "empty"
        return f"{size}; use at least {MIN_PASSWORD_CHARS} characters"
    lowered = password.lower()
    core = re.sub(r"[\W\d_]+$", "", lowered)  # "Password1!" -> "password"
    if lowered == user.lower() or core == user.lower():
        return "the user name"
    if password.isdigit():
        return "only digits"
    if re.fullmatch(r"(.{1,4})\1+", lowered):
        return "a repeated pattern"
    if any(lowered in seq or lowered in seq[::-1] for seq in _SEQUENCES):
        return "a keyboard or alphabet run"
    if lowered in COMMON_PASSWORDS or core in COMMON_PASSWORDS:
        return "a common password"
    return None


def parse_auth(raw: str) -> list[tuple[str, str]]:
    """Credentials from a $KINJECT_AUTH value, "user:password[,user2:password2]": each entry needs a user name and a
    password of at least MIN_PASSWORD_CHARS characters that is not easily guessed (``password_weakness``). Raises
    ConfigError naming the entry (never its password)."""
    creds = []
    for number, entry in enumerate(raw.split(","), 1):
        user, sep, password = entry.partition(":")
        user = user.strip()
        if not sep:
            raise ConfigError(
                f"KINJECT_AUTH: entry {number} has no ':' (the format is user:password[,user2:password2])"
            )
        if not user:
            raise ConfigError(f"KINJECT_AUTH: entry {number} has an empty user name")
        weakness = password_weakness(user, password)
        if weakness and len(password) < MIN_PASSWORD_CHARS:
            raise ConfigError(f"KINJECT_AUTH: the password of {user!r} is {weakness}")
        if weakness:
            raise ConfigError(
                f"KINJECT_AUTH: the password of {user!r} is {weakness}, which is easy to guess; choose another "
                "(e.g. a few random words)"
            )
        creds.append((user, password))
    return creds


# The client address of the request being served, set by ClientAddressMiddleware for the auth callable: gradio calls
# ``auth(username, password)`` without the request.
_CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("kinject_client_address", default=None)
_LOG = logging.getLogger("kinject.app")


class ClientAddressMiddleware:
    """ASGI middleware that makes each HTTP request's client address visible to ``LoginLimiter`` (the address the
    server sees: behind a proxy, the proxy's unless uvicorn trusts its X-Forwarded-For)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        token = _CLIENT_ADDRESS.set(client[0] if client else None)
        try:
            return await self.app(scope, receive, send)
        finally:
            _CLIENT_ADDRESS.reset(token)


class LoginLimiter:
    """Gradio's ``auth`` callable with a brute-force limit. Failed logins are counted per user name and per client
    address in a sliding window; ``max_failures`` within ``window_s`` locks that name or address for ``lockout_s``,
    doubling with each further lockout up to ``max_lockout_s``. While locked, every login for it is refused, a correct
    password too (over HTTP: 429 with Retry-After). Passwords are compared in constant time and never logged."""

    MAX_TRACKED = 10_000  # keys kept at most (an attacker can invent user names); the oldest idle ones go first

    def __init__(
        self,
        creds: list[tuple[str, str]],
        *,
        max_failures: int = 5,
        window_s: float = 300.0,
        lockout_s: float = 60.0,
        max_lockout_s: float = 900.0,
        clock=time.monotonic,
    ):
        self._passwords = {user: password.encode() for user, password in creds}
        self.max_failures, self.window_s = max_failures, window_s
        self.lockout_s, self.max_lockout_s = lockout_s, max_lockout_s
        self.clock = clock
        self._lock = threading.Lock()
        # key -> [failure times in the window, locked until, lockouts so far]
        self._state: dict[tuple[str, str], list] = {}

    def _keys(self, username: str, client: str | None) -> list[tuple[str, str]]:
        return [("user", username)] + ([("address", client)] if client else [])

    def locked_for(self, username: str, client: str | None = None) -> float:
        """Seconds until ``username`` (and ``client``) may try again; 0 when neither is locked."""
        now = self.clock()
        with self._lock:
            until = max((self._state[k][1] for k in self._keys(username, client) if k in self._state), default=now)
        return max(until - now, 0.0)

    def check(self, username: str, password: str, client: str | None = None) -> bool:
        """Whether the login succeeds: the limit first, then the password (a failure counts toward a lockout)."""
        if self.locked_for(username, client) > 0:
            return False
        expected = self._passwords.get(username)
        ok = hmac.compare_digest(password.encode(), expected if expected is not None else b"\0" * 32)
        ok = ok and expected is not None
        now = self.clock()
        with self._lock:
            keys = self._keys(username, client)
            if ok:
                for key in keys:
                    self._state.pop(key, None)
                return True
            locked = []
            for key in keys:
                state = self._state.pop(key, None) or [collections.deque(), 0.0, 0]
                self._state[key] = state  # (re)inserted last: the dict is ordered by latest failure
                failures = state[0]
                if state[2] and now > state[1] + self.max_lockout_s:
                    state[2] = 0  # quiet long enough since the last lockout: the backoff starts over
                failures.append(now)
                while failures and failures[0] <= now - self.window_s:
                    failures.popleft()
                if len(failures) >= self.max_failures:
                    duration = min(self.lockout_s * 2 ** state[2], self.max_lockout_s)
                    state[1], state[2] = now + duration, state[2] + 1
                    failures.clear()
                    locked.append(f"{key[0]} {key[1][:64]!r} for {duration:.0f} s")
            while len(self._state) > self.MAX_TRACKED:
                del self._state[next(iter(self._state))]  # the longest quiet first
        if locked:
            _LOG.warning(
                "login: %s locked after %d failed logins within %.0f s",
                " and ".join(locked), self.max_failures, self.window_s,
            )  # fmt: skip
        return False

    def __call__(self, username: str, password: str) -> bool:
        """The ``auth`` gradio calls from its /login route, with the request's client address from the middleware."""
        client = _CLIENT_ADDRESS.get()
        wait = self.locked_for(username, client)
        if wait > 0:
            raise HTTPException(
                status_code=429,
                detail="Too many failed logins; try again later.",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        return self.check(username, password, client)


def auth_launch_kwargs(creds: list[tuple[str, str]] | None, **limits) -> dict[str, Any]:
    """``launch()`` arguments for these credentials: a ``LoginLimiter`` and the middleware that feeds it addresses."""
    if not creds:
        return {"auth": None}
    return {
        "auth": LoginLimiter(creds, **limits),
        "app_kwargs": {"middleware": [Middleware(ClientAddressMiddleware)]},
    }


def _auth_for(host: str) -> list[tuple[str, str]] | None:
    """Credentials from $KINJECT_AUTH ("user:pass[,user2:pass2]"); required off loopback. A malformed or weak
    value stops the app with a message (even on loopback): ignoring it would serve without the auth it meant."""
    raw = os.environ.get("KINJECT_AUTH", "").strip()
    if raw:
        try:
            return parse_auth(raw)
        except ConfigError as exc:
            sys.exit(f"error: {exc}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        if os.environ.get("KINJECT_ALLOW_NO_AUTH") != "1":
            sys.exit(
                f"error: refusing to serve on {host} without authentication: anyone who reaches it could make this "
                "server fetch URLs and use its GPU. Set KINJECT_AUTH=user:password, or KINJECT_ALLOW_NO_AUTH=1 if a "
                "proxy in front authenticates."
            )
        print(f"WARNING: serving on {host} WITHOUT authentication (KINJECT_ALLOW_NO_AUTH=1)", file=sys.stderr)
    return None


def launch_config(argv: list[str] | None = None) -> AppConfig:
    """The operator's settings: the KINJECT_* environment, then the flags given (generated from ``AppConfig``).

    Raises ConfigError for a malformed value (``KINJECT_PORT=abc``), naming the variable or flag."""
    from_env = AppConfig.from_env(os.environ)
    parser = argparse.ArgumentParser(description="kinject web app (the operator's settings; web users change none)")
    for info in describe_fields(AppConfig):
        text = f"{info.help} (environment: {AppConfig.env_name(info.name)}; now: {getattr(from_env, info.name)})"
        if info.kind == "bool":
            parser.add_argument(info.option, action="store_true", default=None, help=text)
        elif info.kind == "list":
            parser.add_argument(info.option, nargs="+", default=None, metavar="CIDR", help=text)
        else:
            parser.add_argument(info.option, type=int if info.kind == "int" else str, default=None, help=text)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return replace(from_env, **given)


def main(argv: list[str] | None = None) -> None:
    try:
        operator = launch_config(argv)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    auth = auth_launch_kwargs(_auth_for(operator.host))
    try:
        RUNS_ROOT.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        sys.exit(f"error: cannot create the runs folder {RUNS_ROOT} (KINJECT_RUNS): {describe_os_error(exc)}")
    if operator.allow_private_urls or operator.allowed_networks:
        allowed = "all private addresses" if operator.allow_private_urls else ", ".join(operator.allowed_networks)
        print(f"note: this server may fetch {allowed} (operator setting)", file=sys.stderr)
    build_ui(operator).queue(default_concurrency_limit=2).launch(
        server_name=operator.host,
        server_port=operator.port,
        **auth,
        show_error=True,
        max_file_size=operator.max_upload_bytes,
    )


if __name__ == "__main__":
    main()
