"""Training on several processes: data parallel under ``accelerate launch`` (one process per GPU, or gloo processes
on a CPU), the same run folder, checkpoints and resume.

The main process (rank 0) does everything that writes the run folder: augmentation and packing (the others wait,
then read what it cached), the run's settings and status, metrics, the forgetting guard and its checks, the adapter.
Every process trains its share of each global batch (transformers' Trainer wraps the model in
DistributedDataParallel); a stop asked of the main process (Ctrl-C, the app's Stop, the guard) is shared with all
of them at the next step so they stop together.

``run_launched`` is how ``kinject train --devices N`` (and the app, for a training with several devices) starts the
training again under ``accelerate launch`` and waits for it, passing a stop on to the workers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any


def world_size() -> int:
    """Processes training together (1 when not launched by accelerate/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


GROUP_TIMEOUT_S = 6 * 3600  # the others wait while the main process generates the augmentation (long on many pages)


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
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
    return True


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


def launch_command(devices: int, argv: Sequence[str]) -> list[str]:
    """``python -m kinject ARGV`` under ``accelerate launch`` with ``devices`` processes: one per GPU, or gloo
    processes on a CPU (accelerate's multi-GPU launcher is torchrun, which runs CPU processes as well; its
    ``--cpu`` launcher needs MPI for more than one). Mixed precision is the training's own (TrainingArguments)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(devices)]
    command += ["--num_machines", "1", "--main_process_port", str(free_port())]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*command, "-m", "kinject", *argv]


def run_launched(
    devices: int,
    argv: Sequence[str],
    should_stop: Callable[[], bool],
    tick: Callable[[], None] | None = None,
    output: Any = None,
    poll_s: float = 0.5,
) -> int:
    """Run ``python -m kinject ARGV`` as ``devices`` processes and wait; returns the launcher's exit code.

    The launch gets a session of its own, so a terminal's Ctrl-C reaches only this process: when ``should_stop()``
    turns true the workers (not the launcher, which would kill them unsaved) get one SIGINT each, which is
    ``kinject train``'s "stop at the next step and save". ``tick()`` runs every ``poll_s`` while they train (the app
    mirrors the main process's status with it); ``output``: where their output goes (default: inherited)."""
    import signal
    import subprocess
    import time

    import psutil

    launcher = subprocess.Popen(
        launch_command(devices, argv),
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
        with contextlib.suppress(OSError):
            os.killpg(launcher.pid, signal.SIGTERM)
        raise
    return launcher.returncode


def _workers(pid: int, psutil: Any) -> list[Any]:
    """The training processes under the launcher (those running ``-m kinject``, not the launchers)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            line = child.cmdline()
            if "kinject" in line and "accelerate.commands.launch" not in line and "torch.distributed.run" not in line:
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
        code = run_launched(devices, argv, recorder.should_stop, mirror, out)
    final = recorder.run.read_status() or {}
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        raise TrainError(final.get("error") or f"the training on {devices} processes failed ({code}): {tail}")
    return final.get("status", "done"), final.get("message", "")
