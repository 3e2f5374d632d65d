"""Training on several processes: data parallel under ``accelerate launch`` (one process per GPU, or gloo processes
on a CPU), the same run folder, checkpoints and resume.

The main process (rank 0) does everything that writes the run folder: augmentation and packing (the others wait,
then read what it cached), the run's settings and status, metrics, the forgetting guard and its checks, the adapter.
Every process trains its share of each global batch (transformers' Trainer wraps the model in
DistributedDataParallel); a stop asked of the main process (Ctrl-C, the app's Stop, the guard) is shared with all
of them at the next step so they stop together.

``run_launched`` is how ``kinject train --devices N`` (and the app, for a training with several devices) starts the
training again under ``accelerate launch`` and watches it. A stop is passed on to the workers. When one process
dies, torchrun ends the others, and the run's status names the process that ended the training and how
(``python -m kinject.distributed`` runs accelerate's launcher and records torchrun's first failure). Each process
ends when the process that started it dies (Linux's parent-death signal), so a killed launcher leaves nothing
training; and once training runs, a process that stops answering fails the others after ``peer_timeout_s()``, not
after the hours the group allows while the main process generates the augmentation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .declare import ConfigError


def world_size() -> int:
    """Processes training together (1 when not launched by accelerate/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


GROUP_TIMEOUT_S = 6 * 3600  # the others wait while the main process generates the augmentation (long on many pages)
PEER_TIMEOUT_S = 30 * 60  # once training runs the processes meet at every step, seconds apart
PEER_TIMEOUT_VARIABLE = "KINJECT_PEER_TIMEOUT_S"
# a worker's error when SIGTERM ends it (torchrun ends them all when one fails, and passes on an abort)
ENDED_BY_SIGTERM = "ended by SIGTERM: every process of the training ends when one of them fails or it is aborted"


def local_processes() -> int:
    """Processes of this training on this machine (they share its RAM)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


def setup() -> bool:
    """Join the launcher's process group (gloo on a CPU, nccl on GPUs, this process's GPU made current, so its model
    loads there) if not joined yet; False when alone."""
    if world_size() <= 1:
        return False
    import datetime

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        peer_timeout_s()  # a malformed setting fails now, not after the augmentation
        end_with_parent()  # a worker whose launcher was killed must not train on
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
    return True


def peer_timeout_s() -> float:
    """Seconds a process waits for the others once training runs: ``$KINJECT_PEER_TIMEOUT_S``, else 30 minutes."""
    raw = os.environ.get(PEER_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return PEER_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"{PEER_TIMEOUT_VARIABLE}: must be a number of seconds above 0, got {raw!r}")
    return seconds


def limit_peer_wait() -> None:
    """From here on each collective waits at most ``peer_timeout_s()`` for the other processes, so one that hangs
    or is stopped fails the training then, instead of holding every process for ``GROUP_TIMEOUT_S``."""
    if not setup():
        return
    import datetime

    import torch.distributed as dist

    dist.group.WORLD.set_timeout(datetime.timedelta(seconds=peer_timeout_s()))


def describe_peer_timeout(text: str, where: str = "") -> str | None:
    """The message for a collective that timed out waiting for another process (None for any other error)."""
    lowered = text.lower()
    gloo = "gloo" in lowered and "timed out" in lowered
    if world_size() <= 1 or not (gloo or "collective operation timeout" in lowered):  # gloo's, or nccl's watchdog
        return None
    return (
        f"another process of this training did not answer within {peer_timeout_s():g} s{where} (hung, stopped or "
        f"swapped out; {PEER_TIMEOUT_VARIABLE} sets the wait): resume from the last checkpoint with --resume"
    )


def end_with_parent() -> None:
    """Have the kernel send this process SIGTERM when the one that started it dies (Linux's parent-death signal),
    so that no process of a training outlives a killed launcher."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG


def record_error(message: str) -> None:
    """Leave this worker's error where torchrun reads it (``$TORCHELASTIC_ERROR_FILE``), so the launch's record of
    the process that failed first carries it."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE", "")
    if not path:
        return
    data = {"message": {"message": message, "extraInfo": {"py_callstack": "", "timestamp": str(int(time.time()))}}}
    with contextlib.suppress(OSError):
        Path(path).write_text(json.dumps(data), encoding="utf-8")


def barrier() -> None:
    """Wait until every process gets here (nothing when alone)."""
    if setup():
        import torch.distributed as dist

        dist.barrier()


def any_process(*flags: bool) -> tuple[bool, ...]:
    """Each of ``flags``, true on every process when it is true on any of them (a stop asked of one stops all);
    one collective for all of them."""
    if not setup():
        return flags
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    values = torch.tensor([1 if flag else 0 for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in values.tolist())


def devices_of(run: Any, config: Any, resume: bool) -> int:
    """Processes a training asks for: its ``devices``, or on ``resume`` as many as the run was trained on."""
    if resume:
        return int(run.section("train").get("devices", 1))
    return config.devices if config is not None else 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(
    devices: int, argv: Sequence[str], record: str | Path = "-", parent: int | None = None
) -> list[str]:
    """``python -m kinject ARGV`` under ``accelerate launch`` with ``devices`` processes: one per GPU, or gloo
    processes on a CPU (accelerate's multi-GPU launcher is torchrun, which runs CPU processes as well; its
    ``--cpu`` launcher needs MPI for more than one). Mixed precision is the training's own (TrainingArguments).
    The launcher runs inside ``python -m kinject.distributed``, which writes the first failure to ``record`` and
    ends when ``parent`` (by default this process) does."""
    command = [sys.executable, "-m", "kinject.distributed", str(record), str(parent or os.getpid())]
    command += ["--multi_gpu", "--num_processes", str(devices), "--num_machines", "1"]
    command += ["--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*command, "-m", "kinject", *argv]


@dataclass
class Launched:
    """How a launched training ended: the launcher's exit code, and what ended it ("" when it ended well)."""

    code: int
    failure: str = ""


ABORT_WAIT_S = 45.0  # torchrun gives its processes 30 s to end after SIGTERM, then kills them


def run_launched(
    devices: int,
    argv: Sequence[str],
    should_stop: Callable[[], bool],
    tick: Callable[[], None] | None = None,
    output: Any = None,
    poll_s: float = 0.5,
    run_dir: str | Path | None = None,
) -> Launched:
    """Run ``python -m kinject ARGV`` as ``devices`` processes and wait; returns how it ended.

    The launch gets a session of its own, so a terminal's Ctrl-C reaches only this process: when ``should_stop()``
    turns true the workers (not the launcher, which would kill them unsaved) get one SIGINT each, which is
    ``kinject train``'s "stop at the next step and save". ``tick()`` runs every ``poll_s`` while they train (the app
    mirrors the main process's status with it); ``output``: where their output goes (default: inherited). When the
    launch fails or is aborted (an exception here, such as a second Ctrl-C), ``run_dir``'s status says why."""
    import subprocess
    import tempfile

    import psutil

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="kinject-launch-") as folder:
        record = Path(folder) / "failure.json"
        launcher = subprocess.Popen(
            launch_command(devices, argv, record),
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        asked = False
        try:
            while launcher.poll() is None:
                time.sleep(poll_s)
                if tick is not None:
                    tick()
                if should_stop() and not asked:
                    asked = True
                    for child in _workers(launcher.pid, psutil):
                        with contextlib.suppress(psutil.Error):
                            child.send_signal(signal.SIGINT)
        except BaseException:  # aborted (a second Ctrl-C): the processes go with this one
            _end(launcher)
            if run_dir is not None:
                settle_status(run_dir, started, "aborted by the user: its processes were ended without saving", True)
            raise
        first = _read_record(record)
    failure = describe_failure(first, launcher.returncode)
    if failure and run_dir is not None:  # the main process's own error stands, unless another process failed first
        others = "; the training's other processes were ended with it" if first is not None else ""
        settle_status(run_dir, started, failure + others, first is not None and first.get("rank") != 0)
    return Launched(launcher.returncode, failure)


def _end(launcher: Any) -> None:
    """End a launch: SIGTERM to its group (torchrun passes it on), SIGKILL to what is left after ``ABORT_WAIT_S``."""
    import subprocess

    with contextlib.suppress(OSError):
        os.killpg(launcher.pid, signal.SIGTERM)
    try:
        launcher.wait(ABORT_WAIT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(launcher.pid, signal.SIGKILL)


def _workers(pid: int, psutil: Any) -> list[Any]:
    """The training processes under the launcher (those running ``-m kinject``, not the launchers)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    launchers = ("kinject.distributed", "accelerate.commands.launch", "torch.distributed.run")
    out = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            line = child.cmdline()
            if "kinject" in line and not any(name in line for name in launchers):
                out.append(child)
    return out


# what the app's job copies from the launched training's status.json
MIRRORED = ("phase", "phase_done", "phase_total", "phase_unit", "step", "total", "epoch", "loss", "learning_rate")
MIRRORED += ("tokens_per_s", "eta_s", "peak_memory_mb", "message")


def train_job(recorder: Any, devices: int, job: dict[str, Any], generation: Any) -> tuple[str, str]:
    """The app's job for a training on several processes (``recorder``: the job's ``StatusRecorder``; returns the
    final status and message): ``kinject train`` started under ``accelerate launch`` (the command line the Train tab
    shows), its main process writing the run's status, mirrored here; Stop reaches the workers as Ctrl-C does. Their
    output goes to the run's ``train-processes.log``."""
    import shlex

    from .config import TrainConfig
    from .train import TrainError
    from .verbs import train_command

    config = job["config"] or TrainConfig()
    line = train_command(
        recorder.run.path, config, job["blocks"], job["resume"], job["evaluation"], generation, job["augment"]
    )
    argv = shlex.split(line)[3:]  # after "python -m kinject"
    recorder.persist = False  # the main process of the launch writes status.json
    recorder.update(force=True, status="running", phase="launch", message=f"training on {devices} processes")

    def mirror() -> None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            now = recorder.run.read_status() or {}
            if now.get("pid") != os.getpid():  # the launched training's, not this process's
                recorder.update(**{k: now[k] for k in MIRRORED if k in now})

    log = recorder.run.path / "train-processes.log"
    with log.open("w", encoding="utf-8") as out:
        launched = run_launched(devices, argv, recorder.should_stop, mirror, out, run_dir=recorder.run.path)
    final = recorder.run.read_status() or {}
    if launched.code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        reason = final.get("error") or launched.failure
        raise TrainError(reason or f"the training on {devices} processes failed ({launched.code}): {tail}")
    return final.get("status", "done"), final.get("message", "")


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_failure(record: dict[str, Any] | None, code: int) -> str:
    """What ended a launch, from the record of its first failure (``launch_main``) and the launcher's exit code
    ("" when it ended well)."""
    if code == 0:
        return ""
    if not record:
        how = f"was ended by {_signal_name(-code)}" if code < 0 else f"failed with exit code {code}"
        return f"the launcher of the training's processes {how} (see its output)"
    who = f"the process of rank {record.get('rank')} (pid {record.get('pid')})"
    if record.get("signal"):
        oom = " (the kernel's out-of-memory killer sends it, as does kill -9)" if record["signal"] == "SIGKILL" else ""
        return f"{who} was killed by {record['signal']}{oom}"
    if record.get("message") == ENDED_BY_SIGTERM:
        return f"{who} was ended by SIGTERM"
    return f"{who} failed with exit code {record.get('exitcode')}: {record.get('message') or 'see its output'}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def settle_status(run_dir: str | Path, since: float, failure: str, replace_failed: bool) -> None:
    """Record a launched training's ``failure`` in its run's status where the main process could not: it was killed
    (the status still says running), or it only ended because another process had failed (``replace_failed``). A
    status older than the launch (``since``) belongs to another training and stays as it is."""
    from .runs import RunDir

    run = RunDir(run_dir)
    try:
        status = run.read_status() or {}
        last = run.last_checkpoint()
    except (OSError, ValueError):
        return
    if float(status.get("started_at") or 0) < since:
        return
    if status.get("status") in ("queued", "running") or (status.get("status") == "failed" and replace_failed):
        resume = f"; resume from {last.name} with --resume" if last is not None else ""
        status.update(status="failed", error=failure + resume, eta_s=None, updated_at=time.time())
        with contextlib.suppress(OSError):
            run.write_status(status)


def first_failure(failures: dict[int, Any]) -> tuple[int, Any]:
    """The failure that ended a launch, of torchrun's ``ProcessFailure`` by rank. Processes ended by SIGTERM come
    last (torchrun ends the others so when one fails); then the earliest, and within one second (torchrun's
    resolution) one killed by a signal, then one that recorded its own error: the others fail because it went."""

    def order(item: tuple[int, Any]) -> tuple[bool, int, bool, bool, int]:
        number, failure = item
        message = failure.error_file_data.get("message")
        recorded = message.get("message") if isinstance(message, dict) else None
        ended = recorded == ENDED_BY_SIGTERM
        return ended, failure.timestamp, failure.exitcode >= 0, recorded is None, number

    return min(failures.items(), key=order)


def launch_main(argv: list[str]) -> int:
    """``python -m kinject.distributed RECORD PARENT ARGS``: accelerate's launcher with ARGS, ended when process
    PARENT ends; the first failure of its processes (rank, pid, exit code or signal, the process's own error) is
    written to RECORD."""
    record, parent, args = Path(argv[0]), int(argv[1]), argv[2:]
    end_with_parent()
    if os.getppid() != parent:  # the parent died before the parent-death signal was set
        return 1
    from accelerate.commands.launch import launch_command as accelerate_launch
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        accelerate_launch(launch_command_parser().parse_args(args))
    except ChildFailedError as exc:
        rank_of, failure = first_failure(exc.failures)
        message = failure.message.get("message", "") if isinstance(failure.message, dict) else ""
        data = {"rank": rank_of, "pid": failure.pid, "exitcode": failure.exitcode, "message": message}
        data["signal"] = _signal_name(-failure.exitcode) if failure.exitcode < 0 else ""
        with contextlib.suppress(OSError):
            record.write_text(json.dumps(data), encoding="utf-8")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(launch_main(sys.argv[1:]))
