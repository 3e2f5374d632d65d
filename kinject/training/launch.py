"""Starting a training as several processes: ``kinject train --devices N`` (and the app's training job) runs
``python -m kinject ARGV`` again under ``accelerate launch`` and watches it. A stop is passed on to the workers. When
one process dies, torchrun ends the others, and the run's status names the process that ended the training and how
(``python -m kinject.training.launch`` runs accelerate's launcher and records torchrun's first failure).
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

from ..runs import RunDir
from .processes import ENDED_BY_SIGTERM, end_with_parent


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
    The launcher runs inside ``python -m kinject.training.launch``, which writes the first failure to ``record`` and
    ends when ``parent`` (by default this process) does."""
    command = [sys.executable, "-m", "kinject.training.launch", str(record), str(parent or os.getpid())]
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
    launchers = ("kinject.training.launch", "accelerate.commands.launch", "torch.distributed.run")
    out = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            line = child.cmdline()
            if "kinject" in line and not any(name in line for name in launchers):
                out.append(child)
    return out


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
    """``python -m kinject.training.launch RECORD PARENT ARGS``: accelerate's launcher with ARGS, ended when process
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
