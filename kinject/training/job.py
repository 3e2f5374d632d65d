"""A training as a background job (the app's Start and Resume): ``submit_training`` hands the job manager the work of
``train_then_evaluate`` in this process, or, for a training on several devices, of ``kinject train`` started under
``accelerate launch`` with the same settings (``kinject.training.launch``), the main process's status mirrored into
the job's. Stop reaches the workers as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..runs import RunDir
from ..runtime.jobs import JobManager, JobOutcome, JobState, StatusRecorder
from ..settings.commands import train_argv
from ..settings.stages import AugmentConfig, BlocksConfig, EvalConfig, GenerationConfig
from ..settings.training import TrainConfig
from .launch import run_launched
from .loop import TrainError
from .pipeline import train_then_evaluate
from .processes import devices_of

# what the job copies from the launched training's status.json
MIRRORED = ("phase", "phase_done", "phase_total", "phase_unit", "step", "total", "epoch", "loss", "learning_rate")
MIRRORED += ("tokens_per_s", "eta_s", "peak_memory_mb", "message")


def submit_training(
    jobs: JobManager,
    run_dir: str | Path | RunDir,
    config: TrainConfig | None = None,
    resume: bool = False,
    blocks: BlocksConfig | None = None,
    evaluation: EvalConfig | None = None,
    generation: GenerationConfig | None = None,
    augment: AugmentConfig | None = None,
) -> JobState:
    """Start ``train_then_evaluate`` on ``run_dir`` as a job of ``jobs``; returns the queued state."""
    run = RunDir(run_dir).require()  # refuse a non-run folder now, not in the thread
    settings = {"blocks": blocks, "evaluation": evaluation, "generation": generation, "augment": augment}

    def work(recorder: StatusRecorder) -> JobOutcome:
        devices = devices_of(run, config, resume)
        if devices > 1:
            argv = train_argv(run.path, config or TrainConfig(), resume=resume, saved=run.read_config(), **settings)
            return JobOutcome(*_launched(recorder, run, devices, argv))
        outcome = train_then_evaluate(run, config, recorder, resume=resume, **settings)
        return JobOutcome(outcome.result.status, outcome.message, outcome)

    return jobs.submit(run, "train", work)


def _launched(recorder: StatusRecorder, run: RunDir, devices: int, argv: list[str]) -> tuple[str, str]:
    """``kinject ARGV`` on ``devices`` processes (their output in the run's log of them), its main process's status
    mirrored into ``recorder``; returns the final status and message."""
    recorder.persist = False  # the main process of the launch writes status.json
    recorder.update(force=True, status="running", phase="launch", message=f"training on {devices} processes")

    def mirror() -> None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            now = run.read_status() or {}
            if now.get("pid") != os.getpid():  # the launched training's, not this process's
                recorder.update(**{k: now[k] for k in MIRRORED if k in now})

    log = run.processes_log
    with log.open("w", encoding="utf-8") as out:
        launched = run_launched(devices, argv, recorder.should_stop, mirror, out, run_dir=run.path)
    final = run.read_status() or {}
    if launched.code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        reason = final.get("error") or launched.failure
        raise TrainError(reason or f"the training on {devices} processes failed ({launched.code}): {tail}")
    return final.get("status", "done"), final.get("message", "")
