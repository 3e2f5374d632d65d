"""Background jobs: the one owner of training threads in a process.

Job state lives here, guarded by a lock, and is mirrored to the run folder's status (throttled), so the UI can
poll it and a restarted process still tells finished, stopped and failed runs apart; a run whose status says
running but whose process or thread is gone reads as ``interrupted``. One training job at a time per process (one
GPU): a second start is refused naming the first. ``train_then_evaluate`` is the one place where a training is
followed by its evaluation; the CLI and the job runner both call it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .config import AugmentConfig, BlocksConfig, EvalConfig, GenerationConfig, TrainConfig
from .progress import Progress
from .runs import RunBusyError, RunDir

ACTIVE = ("queued", "running")
FINAL = ("done", "stopped", "failed", "interrupted")


class JobBusyError(RuntimeError):
    """A job is already running in this process."""


@dataclass
class JobState:
    """What the UI and CLI show about a job; written to ``status.json``."""

    run_dir: str = ""
    status: str = "idle"  # idle | queued | running | done | stopped | failed | interrupted
    phase: str = ""  # load model | train | save adapter | evaluate ...
    step: int = 0
    total: int = 0
    epoch: float = 0.0
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    peak_memory_mb: float | None = None
    error: str = ""
    message: str = ""
    started_at: float = 0.0
    updated_at: float = 0.0
    pid: int = 0  # the process running the job (0: unknown, reads as not running)
    pid_started: float = 0.0  # that process's start time, which tells a reused pid apart (0: unknown)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def peak_memory_mb() -> float:
    """Peak GPU memory on CUDA, else the process's peak resident memory."""
    try:
        import torch

        if torch.cuda.is_available():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class StatusRecorder(Progress):
    """A Progress that keeps a JobState current, mirrors it to the run folder, and forwards to ``inner``."""

    def __init__(
        self,
        run_dir: str | Path | RunDir,
        inner: Progress | None = None,
        stop_event: threading.Event | None = None,
        lock: threading.Lock | None = None,
        min_interval_s: float = 1.0,
    ):
        self.run = RunDir(run_dir)
        self.run_dir = self.run.path
        self.inner = inner or Progress()
        self.stop_event = stop_event or threading.Event()
        self.lock = lock or threading.Lock()
        self.min_interval_s = min_interval_s
        self.state = JobState(
            run_dir=str(self.run_dir),
            status="queued",
            started_at=time.time(),
            pid=os.getpid(),
            pid_started=_process_started(os.getpid()) or 0.0,
        )
        self._written = 0.0
        self.persist = True  # False for a job refused before it owned the run: its status.json is another's

    def snapshot(self) -> JobState:
        with self.lock:
            return replace(self.state)

    def update(self, force: bool = False, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self.state, key, value)
            self.state.updated_at = time.time()
            due = force or self.state.updated_at - self._written >= self.min_interval_s
            data = self.state.to_dict() if due else None
            if due:
                self._written = self.state.updated_at
        if data is not None and self.persist:
            with contextlib.suppress(OSError):  # a status write must never kill training
                self.run.write_status(data)

    def start(self, phase: str, total: int | None = None, unit: str = "it") -> None:
        changes: dict[str, Any] = {"phase": phase, "status": "running"}
        if phase == "train":
            changes["total"] = total or 0
        self.update(force=True, **changes)
        self.inner.start(phase, total, unit)

    def advance(self, n: int = 1, **info: Any) -> None:
        changes = {k: v for k, v in info.items() if k in JobState.__dataclass_fields__ and v is not None}
        if "step" in info:
            changes["peak_memory_mb"] = peak_memory_mb()
        if "resumed_from" in info:
            changes["step"] = self.state.step + n
        self.update(**changes)
        self.inner.advance(n, **{k: v for k, v in info.items() if k not in ("total",)})

    def log(self, message: str) -> None:
        self.update(message=message)
        self.inner.log(message)

    def finish(self) -> None:
        self.inner.finish()

    def should_stop(self) -> bool:
        return self.stop_event.is_set() or self.inner.should_stop()

    def close(self, status: str, error: str = "", message: str = "", persist: bool = True) -> None:
        """Record the job's final state (done, stopped, failed); ``persist=False`` keeps it in memory only."""
        if not persist:
            self.persist = False
        self.update(force=True, status=status, error=error, message=message or self.state.message, eta_s=None)


def _reset_peak_memory() -> None:
    """So a job reports its own peak, not an earlier job's (CUDA; a CPU process's peak RSS cannot be reset)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def _process_started(pid: int) -> float | None:
    """A process's start in seconds after boot; 0.0 when it is gone or a zombie, None when this OS cannot tell.

    Boot-relative, so a wall-clock step (NTP, a resumed VM) between writing and reading a status does not make a
    live job look like a reused pid. Linux reads ``/proc/PID/stat``; elsewhere psutil's wall-clock start time.
    """
    if Path("/proc/self/stat").is_file():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return 0.0 if fields[0] == "Z" else int(fields[19]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None  # hidden from this /proc (hidepid, another pid namespace)
    import psutil

    try:
        proc = psutil.Process(pid)
        return 0.0 if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except psutil.NoSuchProcess:
        return 0.0
    except psutil.Error:
        return None


def _pid_alive(pid: Any, started: Any = 0.0) -> bool:
    """Whether the process that wrote a status still runs (same pid and, when known, same start time)."""
    try:
        pid, started = int(pid), float(started or 0.0)
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError, TypeError):
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    now = _process_started(pid)
    if now is None:
        return True  # the pid is live and its start time unreadable: that is all we know
    return now > 0 and not (started and abs(now - started) >= 1.0)


def read_status(run_dir: str | Path, live: JobState | None = None) -> JobState | None:
    """The run's last recorded job state; an active state with no live job behind it reads as interrupted."""
    run = RunDir(run_dir)
    if live is not None and Path(live.run_dir) == run.path and live.active:
        return live
    try:
        data = run.read_status()
        if data is None:
            return None
        state = JobState(**{k: v for k, v in data.items() if k in JobState.__dataclass_fields__})
    except (ValueError, TypeError, OSError) as exc:
        return JobState(run_dir=str(run), status="failed", error=f"unreadable job status: {exc}")
    if state.active and (state.pid == os.getpid() or not _pid_alive(state.pid, state.pid_started)):
        state.status = "interrupted"
        state.message = "the process running this job ended before it finished; resume from the last checkpoint"
    return state


@dataclass
class TrainingOutcome:
    """A training and, when asked for, its evaluation."""

    result: Any  # kinject.train.TrainResult
    report: Any = None  # kinject.eval.EvalReport, when evaluated
    eval_error: str = ""  # why the evaluation asked for did not finish
    message: str = ""


def train_then_evaluate(
    run_dir: str | Path | RunDir,
    config: TrainConfig | None,
    progress: Progress,
    resume: bool = False,
    blocks: BlocksConfig | None = None,
    evaluation: EvalConfig | None = None,
    generation: GenerationConfig | None = None,
    augment: AugmentConfig | None = None,
) -> TrainingOutcome:
    """Train, then (``config.eval_at_end``, training done) evaluate the adapter; raises what ``train`` raises.

    The adapter is saved before evaluation starts, so a failed or stopped evaluation leaves the training done.
    """
    from .eval import evaluate
    from .train import train

    config = config or TrainConfig()
    result = train(run_dir, config, progress, resume=resume, blocks=blocks, augment=augment)
    outcome = TrainingOutcome(result, message=f"{result.status} at step {result.step}/{result.total_steps}")
    outcome.message += "; adapter saved" + (f" ({result.note})" if result.note else "")
    if config.eval_at_end and result.status == "done":
        try:
            progress.start("evaluate")
            outcome.report = evaluate(run_dir, evaluation, progress, generation)
            outcome.message += "; evaluation written"
        except Exception as exc:  # noqa: BLE001 - reported with the training's outcome, which stands
            outcome.eval_error = f"{type(exc).__name__}: {exc}"
            outcome.message += f"; evaluation did not finish ({outcome.eval_error})"
    return outcome


class JobManager:
    """Starts training in a background thread; at most one job per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._recorder: StatusRecorder | None = None
        self._stop = threading.Event()

    def start(
        self,
        run_dir: str | Path | RunDir,
        config: TrainConfig | None = None,
        resume: bool = False,
        blocks: BlocksConfig | None = None,
        evaluation: EvalConfig | None = None,
        generation: GenerationConfig | None = None,
        augment: AugmentConfig | None = None,
    ) -> JobState:
        """Start ``train_then_evaluate`` on ``run_dir`` in a background thread; returns the queued state."""
        run = RunDir(run_dir)
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                s = self._recorder.snapshot()
                raise JobBusyError(
                    f"a training job is already running: {s.run_dir} ({s.phase}, step {s.step}/{s.total}); "
                    "stop it or wait for it to finish"
                )
            run.require()  # refuse a non-run folder now, not in the thread
            self._stop = threading.Event()
            recorder = StatusRecorder(run, stop_event=self._stop)
            job = {"config": config, "resume": resume, "blocks": blocks, "evaluation": evaluation, "augment": augment}
            thread = threading.Thread(
                target=self._run, args=(recorder, {**job, "generation": generation}), name=f"kinject-train-{run.name}"
            )
            self._recorder, self._thread = recorder, thread
            thread.daemon = True
            thread.start()
            return recorder.snapshot()

    @staticmethod
    def _run(recorder: StatusRecorder, job: dict[str, Any]) -> None:
        from .train import TrainError

        _reset_peak_memory()
        try:  # train() frees its model's memory itself when it fails, so the next job can start
            outcome = train_then_evaluate(recorder.run, progress=recorder, **job)
        except RunBusyError as exc:
            recorder.close("failed", error=str(exc), persist=False)
            return
        except TrainError as exc:
            recorder.close("failed", error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a thread must record, not swallow, its failure
            recorder.close("failed", error=f"{type(exc).__name__}: {exc}")
            return
        recorder.close(outcome.result.status, message=outcome.message)

    def stop(self) -> bool:
        """Ask the running job to stop at the next step (its adapter so far is saved). False if none runs."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            if running:
                self._stop.set()
            return running

    def state(self) -> JobState:
        """The current (or last) job's state; ``idle`` when none ran in this process."""
        with self._lock:
            return self._recorder.snapshot() if self._recorder else JobState()

    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job ends (or ``timeout``); returns its state."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.state()

    def status_of(self, run_dir: str | Path) -> JobState | None:
        """A run's state: live when this process trains it, else from its ``status.json``."""
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            live = self._recorder.snapshot() if self._recorder and alive else None
        return read_status(run_dir, live)


JOBS = JobManager()  # the process-wide manager the app and CLI share
