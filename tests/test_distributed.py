"""Scale out (issue 20): ``kinject train --devices 2`` starts itself under ``accelerate launch`` as two CPU processes
(gloo), trains data parallel into the same run folder (one status, one metrics file, the checkpoints, the adapter),
and gives the loss curve of one process on the same global batch; the launch command and a stop shared by all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 12
REPO = Path(__file__).resolve().parent.parent
STEPS = 6


def train(run: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "kinject", "train", str(run), "--preset", "cpu-demo", "--max-steps", str(STEPS)]
    command += ["--lora-dropout", "0", "--learning-rate", "0.02", "--quantization", "none", "--save-steps", "3"]
    return subprocess.run([*command, *options], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.slow
def test_two_processes_train_one_run_with_one_processs_loss_curve(tiny_run, tmp_path):
    two = tmp_path / "two"
    shutil.copytree(tiny_run, two)
    alone = train(tiny_run, "--batch-size", "2")
    assert alone.returncode == 0, alone.stderr[-3000:]
    done = train(two, "--batch-size", "1", "--devices", "2")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "training on 2 processes under accelerate launch" in done.stderr
    # one status and one metrics line a step (the main process writes for both), an adapter, resumable checkpoints
    status = json.loads((two / "status.json").read_text())
    assert status["status"] == "done" and status["step"] == STEPS
    curve_alone, curve_two = losses(tiny_run), losses(two)
    assert len(curve_two) == STEPS == len(curve_alone)
    assert (two / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (two / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))[-1] == (
        f"checkpoint-{STEPS}"
    )
    # the same global batch of 2 blocks a step: the curves agree within the noise of which blocks meet in a batch
    gaps = [abs(a - b) for a, b in zip(curve_alone, curve_two, strict=True)]
    assert curve_two[-1] < curve_two[0]  # it learnt
    assert max(gaps) < 0.1 and sorted(gaps)[len(gaps) // 2] < 0.01, (curve_alone, curve_two)


def test_the_launch_command_runs_kinject_under_accelerate():
    from kinject.distributed import launch_command

    command = launch_command(4, ["train", "runs/aws", "--devices", "4"])
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "4" and "--multi_gpu" in command
    assert command[-6:] == ["-m", "kinject", "train", "runs/aws", "--devices", "4"]


def test_alone_a_stop_is_ones_own_and_the_budget_counts_one_process(monkeypatch):
    from kinject import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.any_process(True, False) == (True, False)  # alone, each flag is its own
    distributed.barrier()  # nothing to wait for


@pytest.mark.slow
def test_the_app_starts_a_training_on_several_devices_as_processes(tiny_run, monkeypatch):
    """The job runner starts ``kinject train --devices 2`` under accelerate launch, mirrors the main process's
    status while it trains, and ends with its outcome; the run gets the adapter."""
    from kinject.config import TrainConfig
    from kinject.jobs import JobManager

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    config = TrainConfig(
        preset="cpu-demo", max_steps=4, lora_dropout=0.0, quantization="none", batch_size=1, devices=2
    )
    manager = JobManager()
    manager.start(tiny_run, config)
    final = manager.wait(timeout=600)
    log = (tiny_run / "train-processes.log").read_text()
    assert final.status == "done", (final, log[-3000:])
    assert final.step == 4 and final.total == 4 and final.loss is not None  # mirrored from the launched training
    assert (tiny_run / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tiny_run / "status.json").read_text())["status"] == "done"
    from kinject.runs import RunDir

    assert RunDir(tiny_run).section("train")["devices"] == 2  # the run records how it was trained
