"""The processes of one training: data parallel under ``accelerate launch`` (one process per GPU, or gloo processes
on a CPU), the same run folder, checkpoints and resume. This module is what a process asks while it trains.

The main process (rank 0) does everything that writes the run folder: augmentation and packing (the others wait,
then read what it cached), the run's settings and status, metrics, the forgetting guard and its checks, the adapter.
Every process trains its share of each global batch (transformers' Trainer wraps the model in
DistributedDataParallel); a stop asked of the main process (Ctrl-C, the app's Stop, the guard) is shared with all
of them at the next step so they stop together. Each process ends when the process that started it dies (Linux's
parent-death signal), so a killed launcher leaves nothing training; and once training runs, a process that stops
answering fails the others after ``peer_timeout_s()``, not after the hours the group allows while the main process
generates the augmentation. Starting the processes is ``kinject.training.launch``'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..settings.declare import ConfigError


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
