"""Background jobs: the one owner of long-running threads in a process.

Every long step the app starts (prepare, training, evaluation, merge, push) is a job: ``JobManager.submit`` runs a
function of one ``StatusRecorder`` (the Progress object the step reports through) in a background thread. Job
state lives here, guarded by a lock, and is mirrored to the run folder's status (throttled), so the UI can poll
it and a restarted process still tells finished, stopped and failed runs apart; a run whose status says running
but whose process or thread is gone reads as ``interrupted``. One job at a time per process (one GPU): a second is
refused naming the first. ``JobManager.start`` runs ``kinject.training.pipeline.train_then_evaluate`` as a job.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from .errors import BusyError
from .progress import Progress

ACTIVE = ("queued", "running")
FINAL = ("done", "stopped", "failed", "interrupted")


class RunRecord(Protocol):
    """What a job needs of the run it works on (``kinject.runs.RunDir`` has it): where it is, and its status and
    metrics records."""

    path: Path
    name: str

    def read_status(self) -> dict[str, Any] | None: ...

    def write_status(self, data: dict[str, Any]) -> None: ...

    def read_metrics(self) -> list[dict[str, Any]]: ...


class JobBusyError(RuntimeError):
    """A job is already running in this process."""


@dataclass
class JobState:
    """What the UI and CLI show about a job; written to ``status.json``."""

    run_dir: str = ""
    status: str = "idle"  # idle | queued | running | done | stopped | failed | interrupted
    kind: str = "train"  # what the job does: train | prepare | evaluate | merge | push
    phase: str = ""  # load model | train | save adapter | evaluate ...
    phase_done: int = 0  # units of the current phase done ...
    phase_total: int = 0  # ... of this many (0: not known)
    phase_unit: str = ""  # what a unit is: step, answer, page ...
    phase_started: float = 0.0
    step: int = 0  # training steps (kind train; the last training's when another kind of job ran since)
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
    job_id: int = 0  # which job of the process that ran it (1, 2, ...), so a caller waits for its own job

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


# The numbers a stage may report through ``advance(**info)`` that the job state keeps (a fetch's per-page
# ``status``, say, is not the job's).
_REPORTED = ("step", "total", "epoch", "loss", "learning_rate", "tokens_per_s", "eta_s")


class StatusRecorder(Progress):
    """A Progress that keeps a JobState current, mirrors it to the run folder, and forwards to ``inner``."""

    def __init__(
        self,
        run: RunRecord,
        inner: Progress | None = None,
        stop_event: threading.Event | None = None,
        lock: threading.Lock | None = None,
        min_interval_s: float = 1.0,
        kind: str = "train",
    ):
        self.run = run
        self.run_dir = run.path
        self.inner = inner or Progress()
        self.stop_event = stop_event or threading.Event()
        self.lock = lock or threading.Lock()
        self.min_interval_s = min_interval_s
        self.state = JobState(
            run_dir=str(self.run_dir),
            status="queued",
            kind=kind,
            started_at=time.time(),
            pid=os.getpid(),
            pid_started=process_started(os.getpid()) or 0.0,
        )
        self._written = 0.0
        self.persist = True  # False for a job refused before it owned the run: its status.json is another's
        if kind != "train":  # keep the run's training numbers in its status while another kind of job runs
            with contextlib.suppress(OSError, ValueError, TypeError):
                before = self.run.read_status() or {}
                for key in ("step", "total", "epoch", "loss"):
                    if before.get(key) is not None:
                        setattr(self.state, key, before[key])

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
        changes: dict[str, Any] = {
            "phase": phase,
            "status": "running",
            "phase_done": 0,
            "phase_total": total or 0,
            "phase_unit": "" if unit == "it" else unit,
            "phase_started": time.time(),
            "eta_s": None,
        }
        if phase == "train":
            changes["total"] = total or 0
        self.update(force=True, **changes)
        self.inner.start(phase, total, unit)

    def advance(self, n: int = 1, **info: Any) -> None:
        changes = {k: v for k, v in info.items() if k in _REPORTED and v is not None}
        with self.lock:
            done = self.state.phase_done + n
            total, began = self.state.phase_total, self.state.phase_started
        if "step" in info:
            changes["peak_memory_mb"] = peak_memory_mb()
            done = int(info["step"])
        if "resumed_from" in info:
            changes["step"] = done = self.state.step + n
            changes.update(self._resumed_epoch(done))
        changes["phase_done"] = done
        if "eta_s" not in info and total and done and "resumed_from" not in info:
            # Seconds per unit so far in this phase, times the units left (training reports its own ETA).
            elapsed = time.time() - began
            changes["eta_s"] = round(elapsed / done * max(total - done, 0), 1) if elapsed > 0 else None
        self.update(**changes)
        self.inner.advance(n, **{k: v for k, v in info.items() if k not in ("total",)})

    def _resumed_epoch(self, step: int) -> dict[str, Any]:
        """The epoch of a resumed training's checkpoint step, from its logged metrics (kept up to that step)."""
        with contextlib.suppress(OSError, ValueError):
            rows = [r for r in self.run.read_metrics() if r.get("step", 0) <= step and "epoch" in r]
            if rows:
                return {"epoch": float(rows[-1]["epoch"]), "loss": rows[-1].get("loss")}
        return {}

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


def process_started(pid: int) -> float | None:
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
    now = process_started(pid)
    if now is None:
        return True  # the pid is live and its start time unreadable: that is all we know
    return now > 0 and not (started and abs(now - started) >= 1.0)


def read_status(run: RunRecord, live: JobState | None = None) -> JobState | None:
    """The run's last recorded job state; an active state with no live job behind it reads as interrupted.
    RunDamagedError (naming the file and field) when ``status.json`` holds no job state."""
    if live is not None and Path(live.run_dir) == run.path and live.active:
        return live
    data = run.read_status()
    if data is None:
        return None
    state = JobState(**{k: v for k, v in data.items() if k in JobState.__dataclass_fields__})
    state.run_dir = str(run.path)  # where it is now: a copied or renamed run names itself, not its old folder
    if state.active and (state.pid == os.getpid() or not _pid_alive(state.pid, state.pid_started)):
        state.status = "interrupted"
        state.message = "the process running this job ended before it finished; resume from the last checkpoint"
    return state


@dataclass
class JobOutcome:
    """What a job's work function returns: its final status, a message for the user, and its value."""

    status: str = "done"
    message: str = ""
    value: Any = None


def describe_error(exc: BaseException) -> str:
    """A failure for the user: kinject's own errors say what to do already; others get their type named."""
    return str(exc) if type(exc).__module__.startswith("kinject.") else f"{type(exc).__name__}: {exc}"


def describe_job(state: JobState) -> str:
    """What a job is doing, in words ("training of p5 (train, step 12/40)")."""
    noun = {"train": "training", "prepare": "preparing", "evaluate": "evaluation", "merge": "merge", "push": "push"}
    what = f"{noun.get(state.kind, state.kind)} of {Path(state.run_dir).name}"
    unit = state.phase_unit + ("s" if state.phase_unit and state.phase_total != 1 else "")
    done = f"{state.phase_done}/{state.phase_total} {unit}".strip() if state.phase_total else ""
    doing = ", ".join(x for x in (state.phase, done) if x)
    return f"{what} ({doing})" if doing else what


class JobManager:
    """Runs one background job at a time (training, evaluation, prepare, merge, push) and keeps its state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._recorder: StatusRecorder | None = None
        self._stop = threading.Event()
        self._outcome: JobOutcome | None = None
        self._jobs = 0
        # The last jobs' final states and outcomes by job id: a caller reads its own job's, not whichever ran last.
        self._ended: dict[int, tuple[JobState, JobOutcome | None]] = {}

    def submit(
        self,
        run: RunRecord,
        kind: str,
        work: Callable[[StatusRecorder], JobOutcome | Any],
        persist: bool = True,
    ) -> JobState:
        """Run ``work(recorder)`` in a background thread; returns the queued state.

        ``recorder`` is the job's one Progress object: ``work`` passes it to the verb it calls, so the verb's
        phases, counts and ETA become the job's state, and the Stop button reaches it through ``should_stop``.
        ``work`` returns a ``JobOutcome`` (or any value, meaning done); an exception fails the job with its message,
        ``InterruptedError`` stops it. ``persist=False`` keeps the state in memory (a run folder that does not
        exist yet, as while preparing it).
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise JobBusyError(
                    f"{describe_job(self._recorder.snapshot())} is already running; stop it or wait for it to finish"
                )
            self._stop = threading.Event()
            recorder = StatusRecorder(run, stop_event=self._stop, kind=kind)
            recorder.persist = persist
            self._jobs += 1
            recorder.state.job_id = self._jobs
            thread = threading.Thread(target=self._run, args=(recorder, work), name=f"kinject-{kind}-{run.name}")
            self._recorder, self._thread, self._outcome = recorder, thread, None
            thread.daemon = True
            thread.start()
            return recorder.snapshot()

    def _run(self, recorder: StatusRecorder, work: Callable[[StatusRecorder], Any]) -> None:
        _reset_peak_memory()
        outcome = None
        try:  # train() frees its model's memory itself when it fails, so the next job can start
            outcome = work(recorder)
        except BusyError as exc:  # refused before it owned the run: its status.json is the other job's
            recorder.close("failed", error=str(exc), persist=False)
        except InterruptedError as exc:
            recorder.close("stopped", message=str(exc) or "stopped")
        except Exception as exc:  # noqa: BLE001 - a thread must record, not swallow, its failure
            if getattr(exc, "phase", ""):  # the phase that failed (a TrainError's), not the last one reported
                recorder.update(phase=exc.phase)
            recorder.close("failed", error=describe_error(exc))
        else:
            outcome = outcome if isinstance(outcome, JobOutcome) else JobOutcome(value=outcome)
            with self._lock:
                self._outcome = outcome
            recorder.close(outcome.status, message=outcome.message)
        final = recorder.snapshot()
        with self._lock:
            self._ended[final.job_id] = (final, outcome)
            for old in sorted(self._ended)[:-16]:
                del self._ended[old]

    def result(self, job_id: int) -> tuple[JobState, JobOutcome | None] | None:
        """Job ``job_id``'s final state and outcome (None for the outcome when it failed or stopped without one);
        None while it runs."""
        with self._lock:
            return self._ended.get(job_id)

    def job_running(self, job_id: int) -> bool:
        """Whether job ``job_id`` is the one running now."""
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            return alive and self._recorder is not None and self._recorder.state.job_id == job_id

    def outcome(self) -> JobOutcome | None:
        """The last job's outcome once it finished without failing (None before, or when it failed)."""
        with self._lock:
            return self._outcome

    def stop(self) -> bool:
        """Ask the running job to stop at its next check (a training saves its adapter so far, an evaluation
        what it has scored). False if none runs."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            if running:
                self._stop.set()
            return running

    def stopping(self) -> bool:
        """Whether a job runs that was asked to stop (it ends at its next check)."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive() and self._stop.is_set()

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

    def status_of(self, run: RunRecord) -> JobState | None:
        """A run's state: live when this process runs a job on it, else from its ``status.json`` (RunDamagedError
        when that is damaged)."""
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            live = self._recorder.snapshot() if self._recorder and alive else None
        return read_status(run, live)


JOBS = JobManager()  # the process-wide manager the app and CLI share
