"""The handlers that run a verb as the background job: prepare, train (start, resume), evaluate, merge, export,
push.

Each builds the same config objects the CLI builds (``forms.form_configs``: ``kinject.settings.resolve``), submits
the job, and shows its progress in the status area until that job ends.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import gradio as gr

from kinject.augment.user_questions import QuestionFileError, read_question_file
from kinject.runs import RunDir, RunError
from kinject.runtime.jobs import JobBusyError, JobOutcome
from kinject.settings.commands import prepare_command, train_command
from kinject.settings.services import OPERATOR_FETCH_FIELDS
from kinject.settings.stages import ConfigError, PrepareConfig
from kinject.training.job import submit_training

from . import state
from .eval_view import show_eval
from .forms import PREPARE_LEAVE_OUT, form_configs, takes_fields
from .handlers import (
    FORM_UNCHANGED,
    job_ended,
    job_finished,
    pick_run,
    run_settings,
    runs_update,
    user_error,
    wait_for_job,
)
from .views import questions_text, sources_table, status_text
from .words import app_text


def _prepare_work(config: PrepareConfig, run: RunDir, force: bool):
    """The prepare job's work: the verb, its sources' rows kept when every source failed."""
    from kinject.corpus.prepare import NoUsableSourceError, prepare

    def work(recorder) -> JobOutcome:
        try:
            result = prepare(config, run.path, force=force, progress=recorder)
        except NoUsableSourceError as exc:
            return JobOutcome("failed", "No usable source: every URL and file failed (see the table).", exc.rows)
        return JobOutcome("done", f"prepared: {sum(r['status'] == 'ok' for r in result.rows)} sources", result)

    return work


_UNCHANGED = [gr.skip(), *FORM_UNCHANGED]  # the run picker and the Train form, left as they are


@takes_fields("prepare", leave_out=OPERATOR_FETCH_FIELDS + PREPARE_LEAVE_OUT)
def do_prepare(run_name: str = "", force: bool = False, selected: str | None = None, **settings: Any):
    """Prepare as a job (progress in the status area, Stop stops it); yields the sources, summary, status, run
    picker and, once the run is made, the Train form's values for it (``run_settings``).

    A failure is shown in the summary (and a toast), not raised: an event that raises marks every output with an
    error badge, and the run picker is one of them. The status area then goes back to the ``selected`` run, which
    the picker still shows."""
    name = (run_name or "").strip() or time.strftime("run-%Y%m%d-%H%M%S")

    def failed(message: str, rows: list[dict[str, Any]] | None = None):
        gr.Warning(message)
        return sources_table(rows or []), f"**Nothing prepared.** {message}", _status_of(selected), *_UNCHANGED

    try:
        run = state.run_dir(name)
        config = PrepareConfig(**form_configs("prepare", settings))
        # Which addresses may be fetched is the operator's choice, whatever the request says.
        config = replace(config, fetch=state.OPERATOR.fetch_policy(config.fetch))
        RunDir.check_writable(run.path)
        for path in config.augment.questions:  # a malformed question file is named before anything is fetched
            read_question_file(path)
    except state.WebError as exc:
        yield failed(str(exc))
        return
    except (ConfigError, RunError, QuestionFileError) as exc:
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
    try:
        job = state.JOBS.submit(run, "prepare", _prepare_work(config, run, force), persist=False)
    except JobBusyError as exc:
        yield failed(f"Prepare must wait: {exc}. Press Stop to stop it.")
        return
    for _ in wait_for_job(name, job):  # the status area is the poll's (it shows the prepare as "Running now")
        yield gr.skip(), "Preparing… (progress above; Stop stops it)", gr.skip(), *_UNCHANGED
    job_state, outcome = job_ended(job)
    if job_state.status != "done" or outcome is None:
        rows = outcome.value if outcome is not None and isinstance(outcome.value, list) else []
        yield failed(app_text(job_state.error or job_state.message or job_state.status), rows)
        return
    result = outcome.value
    s = result.stats
    ok = sum(r["status"] == "ok" for r in result.rows)
    summary = (
        f"**{name}**: {ok}/{len(result.rows)} sources used · {s.corpus_tokens:,} tokens · {s.blocks} blocks of "
        f"{s.block_size} · packing efficiency {s.packing_efficiency:.1%}\n\n"
        f"{questions_text(result.questions)}"
        f"CLI equivalent: `{prepare_command(config, run.path, force)}`"
    )
    yield sources_table(result.rows), summary, status_text(name), runs_update(name), *run_settings(name)


def _status_of(name: str | None) -> str:
    """The status area for the run ``name`` when it is still a run, else for none."""
    try:
        return status_text(name if name and state.run_dir(name).is_run() else None)
    except state.WebError:
        return status_text(None)


@takes_fields("train")
def start_training(run: str | None = None, shown_preset: str | None = None, **settings: Any):
    """Start a training of ``run`` with the form's settings; returns the equivalent command."""
    return _start(run, settings, shown_preset, resume=False)


@takes_fields("train")
def resume_training(run: str | None = None, shown_preset: str | None = None, **settings: Any):
    """Resume ``run``'s training from its last checkpoint with its saved configuration (the form's
    "Eval at end" and evaluation settings still apply)."""
    return _start(run, settings, shown_preset, resume=True)


def _start(name: str | None, settings: dict[str, Any], shown_preset: str | None, resume: bool):
    """Start (or resume) training as the job; the status area, the loss plot and the buttons follow it.

    ``settings`` are the form's; where it still showed another preset's values (``shown_preset``), the chosen
    preset's count (``kinject.settings.resolve.preset_settings``: in the browser the form follows the preset, an API
    call may not)."""
    run = pick_run(name)
    try:
        if resume and run.is_run() and not run.section("train"):
            raise gr.Error(f"Run {run.name} was never trained, so there is nothing to resume: press Start.")
        configs = form_configs("train", settings, run, shown_preset, resume)
        config, blocks = configs["train"], configs["blocks"]
        rest = {"evaluation": configs["eval"], "generation": configs["generation"], "augment": configs["augment"]}
        # Before the job starts: the command's baseline is the run's config.yaml, which training then rewrites.
        command = train_command(run.path, config, blocks, resume, saved=run.read_config(), **rest)
        submit_training(state.JOBS, run, config, resume=resume, blocks=blocks, **rest)
    except JobBusyError as exc:
        raise gr.Error(f"Training must wait: {exc}. Press Stop to stop it.") from None
    except (ConfigError, RunError) as exc:
        raise user_error(str(exc)) from exc
    return f"CLI equivalent: `{command}`"


@takes_fields("eval")
def do_evaluate(run: str | None = None, **settings: Any):
    """Evaluate as a job: yields the status area while it runs, then the scores, chart and answers. Stop keeps the
    probes answered so far (scored and written, marked as stopped)."""
    from kinject.eval import EvalStopped, evaluate

    run_dir = pick_run(run)
    try:
        run_dir.require()
        configs = form_configs("eval", settings)
    except (ConfigError, RunError) as exc:
        raise user_error(str(exc)) from exc

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
        job = state.JOBS.submit(run_dir, "evaluate", work)
    except JobBusyError as exc:
        raise gr.Error(f"Evaluation must wait: {exc}. Press Stop to stop it.") from None
    for text in wait_for_job(run, job):
        yield gr.skip(), gr.skip(), gr.skip(), text
    job_finished(job)
    yield (*show_eval(run), status_text(run))


def do_merge(run: str | None = None):
    """Merge the run's adapter into a 16-bit copy of its base model, as a job (for TGI or a merged chat)."""
    from kinject.sharing.merge import merge

    run_dir = pick_run(run)
    try:
        run_dir.require_adapter()
    except RunError as exc:
        raise user_error(str(exc)) from exc
    try:
        job = state.JOBS.submit(
            run_dir, "merge", lambda recorder: JobOutcome("done", f"merged into {merge(run_dir, recorder)}")
        )
    except JobBusyError as exc:
        raise gr.Error(f"Merge must wait: {exc}. Press Stop to stop it.") from None
    yield from wait_for_job(run, job)
    job_finished(job)


@takes_fields("export")
def do_export(run: str | None = None, **settings: Any):
    """Export the run as the form asks (the merged model, the LoRA adapter over its base, or both; q8_0 by default)
    as GGUF with Ollama Modelfiles into its export/ folder, as a job; the status says where and the commands that run
    it (``kinject.sharing.export``, the CLI's own)."""
    from kinject.sharing.export import export

    run_dir = pick_run(run)
    try:
        run_dir.require_adapter()
        configs = form_configs("export", {k: v for k, v in settings.items() if v not in (None, "")})
    except RunError as exc:
        raise user_error(str(exc)) from exc
    except ConfigError as exc:
        raise user_error(app_text(str(exc))) from exc

    def work(recorder) -> JobOutcome:
        result = export(run_dir, configs["export"], configs["generation"], progress=recorder)
        commands = "; ".join(f"`{c}`" for c in result.commands)
        return JobOutcome("done", f"exported into {result.folder}: run it with {commands}", result)

    try:
        job = state.JOBS.submit(run_dir, "export", work)
    except JobBusyError as exc:
        raise gr.Error(f"Export must wait: {exc}. Press Stop to stop it.") from None
    yield from wait_for_job(run, job)
    job_finished(job)


def _push_work(run_dir: RunDir, config: Any, token: str | None):
    """The push job's work; whatever fails, its message never carries the token."""
    from kinject.models.hub import scrub
    from kinject.sharing.publish import PublishError, push

    def work(recorder) -> JobOutcome:
        server_token = state.OPERATOR.push_with_server_token
        try:
            result = push(run_dir, config, token, recorder, server_token=server_token)
        except PublishError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever it was, its message must not carry the token
            raise PublishError(scrub(f"{type(exc).__name__}: {exc}", token)) from None
        kind = "private" if result.private else "public"
        what = "nothing changed, no new commit" if result.unchanged else f"pushed to {result.repo_id} ({kind})"
        return JobOutcome("done", f"{what}: {result.url}" + (f" ({result.note})" if result.note else ""), result)

    return work


@takes_fields("push", leave_out=("public",))
def do_push(run: str | None = None, token: str = "", private: bool = True, **settings: Any):
    """Push the run's adapter and model card to the Hub as a job; yields (status, link to the result).

    A failure is shown in the link's place (and a toast), not raised: an event that raises marks every output with
    an error badge, and the status area, shown on every tab, is one of them. The token lives in this call and the
    job's closure only: never in the status, a file or a message."""

    def failed(message: str, status: Any = None):
        gr.Warning(message)
        return gr.skip() if status is None else status, f"**Push failed:** {message}"

    try:
        run_dir = state.run_dir(run)
    except state.WebError as exc:
        yield failed(str(exc))
        return
    settings = {k: v for k, v in settings.items() if v not in (None, "")}
    try:
        config = form_configs("push", {**settings, "public": not private})["publish"]
    except ConfigError as exc:
        yield failed(app_text(str(exc)))
        return
    if not config.repo:
        yield failed("Give the repository to push to as OWNER/NAME in the Repo field (Publish tab).")
        return
    token = (token or "").strip() or None
    if token is None and not state.OPERATOR.push_with_server_token:
        yield failed(
            "Paste a Hugging Face write token into the Hugging Face token field (Publish tab; create one at "
            "huggingface.co/settings/tokens): this server does not push with its own token."
        )
        return
    try:
        # persist=False: a push leaves the run's status.json (its training's) as it was.
        job = state.JOBS.submit(run_dir, "push", _push_work(run_dir, config, token), persist=False)
    except JobBusyError as exc:
        yield failed(f"Push must wait: {exc}. Press Stop to stop it.")
        return
    for text in wait_for_job(run, job):
        yield text, gr.update()
    job_state, outcome = job_ended(job)
    if job_state.status == "failed":
        # Its message was scrubbed of the token by the job's work (``_push_work``).
        yield failed(app_text(job_state.error or job_state.message or "the push job failed"), status_text(run))
        return
    outcome = outcome or JobOutcome(job_state.status, job_state.message)
    result = outcome.value
    link = f"**Pushed:** [{result.repo_id}]({result.url}) · [commit]({result.commit_url})" if result else ""
    warning = f"\n\n**Warning:** {result.warning}" if result and result.warning else ""
    if warning:
        gr.Warning(result.warning)
    yield f"{status_text(run)}\n\n**Push {outcome.status}:** {outcome.message}{warning}", link
