"""Training on several processes (``kinject.training.launch``, ``processes``, ``job``): ``kinject train --devices 2``
starts itself under ``accelerate launch`` as two CPU processes (gloo), trains data parallel into the same run folder
(one status, one metrics file, the checkpoints, the adapter), and gives the loss curve of one process on the same
global batch; the launch command and a stop shared by all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
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
    from kinject.training.launch import launch_command

    command = launch_command(4, ["train", "runs/aws", "--devices", "4"], "/tmp/first-failure.json", parent=123)
    # accelerate's launcher, inside the wrapper that records the first failure and ends with its parent
    assert command[:5] == [sys.executable, "-m", "kinject.training.launch", "/tmp/first-failure.json", "123"]
    assert command[command.index("--num_processes") + 1] == "4" and "--multi_gpu" in command
    assert command[-6:] == ["-m", "kinject", "train", "runs/aws", "--devices", "4"]


def test_alone_a_stop_is_ones_own_and_the_budget_counts_one_process(monkeypatch):
    from kinject.training import processes

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert processes.world_size() == 1 and processes.is_main()
    assert processes.any_process(True, False) == (True, False)  # alone, each flag is its own
    processes.barrier()  # nothing to wait for


@pytest.mark.slow
def test_the_app_starts_a_training_on_several_devices_as_processes(tiny_run, monkeypatch):
    """The job runner starts ``kinject train --devices 2`` under accelerate launch, mirrors the main process's
    status while it trains, and ends with its outcome; the run gets the adapter."""
    from kinject.runtime.jobs import JobManager
    from kinject.settings.training import TrainConfig
    from kinject.training.job import submit_training

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    config = TrainConfig(
        preset="cpu-demo", max_steps=4, lora_dropout=0.0, quantization="none", batch_size=1, devices=2
    )
    manager = JobManager()
    submit_training(manager, tiny_run, config)
    final = manager.wait(timeout=600)
    log = (tiny_run / "train-processes.log").read_text()
    assert final.status == "done", (final, log[-3000:])
    assert final.step == 4 and final.total == 4 and final.loss is not None  # mirrored from the launched training
    assert (tiny_run / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tiny_run / "status.json").read_text())["status"] == "done"
    from kinject.runs import RunDir

    assert RunDir(tiny_run).section("train")["devices"] == 2  # the run records how it was trained


# ------------------------------------------------------------------------ a process that dies, hangs or is killed


@pytest.fixture
def start():
    """``start(run, steps, **env)``: ``kinject train RUN --devices 2`` in the background (its output in
    RUN/../launch.log); whatever it started and left running is killed after the test."""
    launched: list[subprocess.Popen] = []

    def launch(run: Path, steps: int, **env: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "kinject", "train", str(run), "--preset", "cpu-demo", "--max-steps"]
        command += [str(steps), "--lora-dropout", "0", "--quantization", "none", "--save-steps", "5"]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
        log = (run.parent / "launch.log").open("w")
        command += ["--batch-size", "1", "--devices", "2"]
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=log)
        launched.append(process)
        return process

    yield launch
    for process in launched:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(process.pid).children(recursive=True):
                child.resume()
                child.kill()
        process.kill()
        process.wait()


def status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def workers_at_step(launch: subprocess.Popen, run: Path, step: int) -> dict[str, psutil.Process]:
    """The training's processes by rank, once the run has trained ``step`` steps and saved a checkpoint."""
    deadline = time.time() + 180
    while (status(run).get("step") or 0) < step or not list((run / "checkpoints").glob("checkpoint-*")):
        assert launch.poll() is None and time.time() < deadline, (run.parent / "launch.log").read_text()[-3000:]
        time.sleep(0.1)
    found = {}
    for child in psutil.Process(launch.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "RANK" in child.environ() and "kinject.training.launch" not in child.cmdline():
                found[child.environ()["RANK"]] = child
    assert set(found) == {"0", "1"}, found
    return found


def ends(launch: subprocess.Popen, processes: list[psutil.Process], within_s: float) -> int:
    """The launcher's exit code, once it and every process it started have ended (fails if any outlives
    ``within_s``)."""
    code = launch.wait(within_s)
    _, alive = psutil.wait_procs(processes, timeout=within_s)
    for process in alive:
        process.kill()
    assert not alive, f"left running: {alive}"
    return code


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["0", "1"])
def test_a_killed_process_ends_the_training_whose_status_names_it_and_resume_finishes(tiny_run, start, killed):
    """SIGKILL of the main process (which then cannot write its status) or of another: the launch ends within
    seconds, the status says failed, which process and how, and the checkpoint to resume; --resume finishes."""
    launch = start(tiny_run, 40)
    processes = workers_at_step(launch, tiny_run, 8)
    processes[killed].kill()
    assert ends(launch, [*processes.values()], 60) == 1
    final = status(tiny_run)
    assert final["status"] == "failed", final
    assert f"rank {killed} (pid {processes[killed].pid}) was killed by SIGKILL" in final["error"], final["error"]
    assert "resume from checkpoint-" in final["error"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "kinject", "train", str(tiny_run), "--resume"]  # on 2 processes, as before
    resumed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=environment, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert status(tiny_run)["status"] == "done" and losses(tiny_run) and len(losses(tiny_run)) == 40


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_the_training_and_saves_its_adapter(tiny_run, start):
    """``kill`` (or a closed terminal, or a service manager stopping it) is a Ctrl-C: the processes stop at the next
    step and save; none is left training on."""
    launch = start(tiny_run, 400)
    processes = workers_at_step(launch, tiny_run, 6)
    launch.send_signal(signal.SIGTERM)
    assert ends(launch, [*processes.values()], 60) == 0
    assert status(tiny_run)["status"] == "stopped"
    assert (tiny_run / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_killed_launcher_leaves_no_process_training(tiny_run, start):
    """SIGKILL of ``kinject train --devices 2`` itself: accelerate's launcher and the workers end with it."""
    launch = start(tiny_run, 400)
    processes = workers_at_step(launch, tiny_run, 6)
    rest = psutil.Process(launch.pid).children(recursive=True)
    launch.kill()
    ends(launch, rest, 45)
    assert status(tiny_run)["status"] == "failed"
    assert processes["0"].pid == status(tiny_run)["pid"]


@pytest.mark.slow
def test_a_process_that_stops_answering_fails_the_training_after_the_peer_timeout(tiny_run, start):
    """A worker stopped (or hung) mid-training: the main process waits ``KINJECT_PEER_TIMEOUT_S``, not the group's
    hours, then fails with a message that says so."""
    launch = start(tiny_run, 400, KINJECT_PEER_TIMEOUT_S="3")
    processes = workers_at_step(launch, tiny_run, 6)
    processes["1"].suspend()
    deadline = time.time() + 60
    while status(tiny_run).get("status") != "failed":
        assert time.time() < deadline, status(tiny_run)
        time.sleep(0.2)
    assert "another process of this training did not answer within 3 s" in status(tiny_run)["error"]
    processes["1"].resume()  # so torchrun's SIGTERM ends it now, not after its 30 s grace
    assert ends(launch, [*processes.values()], 60) == 1


def failure(timestamp: int, exitcode: int, message: str | None = None) -> SimpleNamespace:
    """A stand-in for torchrun's ``ProcessFailure`` (``message``: the error the process recorded)."""
    data = {"message": {"message": message, "extraInfo": {}}} if message is not None else {"message": "<NONE>"}
    return SimpleNamespace(timestamp=timestamp, exitcode=exitcode, error_file_data=data)


def test_the_first_failure_is_the_cause_not_its_consequences():
    from kinject.training.launch import first_failure
    from kinject.training.processes import ENDED_BY_SIGTERM

    closed = "RuntimeError: [gloo] Connection closed by peer"
    # killed in the same second as the other fails on the closed connection
    assert first_failure({0: failure(100, 1, closed), 1: failure(100, -9)})[0] == 1
    # an error of its own, while torchrun ends the others with SIGTERM
    assert first_failure({0: failure(100, 1, ENDED_BY_SIGTERM), 1: failure(100, 1, "TrainError: disk full")})[0] == 1
    # one ended by a user's SIGTERM, then the others by torchrun's
    assert first_failure({0: failure(101, 1, ENDED_BY_SIGTERM), 1: failure(100, 1, ENDED_BY_SIGTERM)})[0] == 1
    assert first_failure({0: failure(100, 1, "TrainError: disk full"), 1: failure(101, -15)})[0] == 0


def test_the_status_of_a_failed_launch_names_the_process_and_the_checkpoint(tmp_path):
    from kinject.runs import RunDir
    from kinject.training.launch import describe_failure, settle_status

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.checkpoints_dir / "checkpoint-20").mkdir(parents=True)
    (run.checkpoints_dir / "checkpoint-20" / "trainer_state.json").write_text("{}")
    killed = describe_failure({"rank": 1, "pid": 42, "exitcode": -9, "signal": "SIGKILL", "message": ""}, 1)
    assert killed.startswith("the process of rank 1 (pid 42) was killed by SIGKILL")
    own = {"status": "failed", "error": "disk full", "started_at": 200.0}
    run.write_status(own)
    settle_status(run.path, 100.0, killed, replace_failed=False)
    assert run.read_status()["error"] == "disk full"  # the main process's own error stands
    settle_status(run.path, 100.0, killed, replace_failed=True)
    assert run.read_status()["error"] == killed + "; resume from checkpoint-20 with --resume"
    run.write_status({"status": "running", "started_at": 200.0})
    settle_status(run.path, 300.0, killed, replace_failed=True)
    assert run.read_status()["status"] == "running"  # older than the launch: another training's status
    run.write_status({"status": "running", "started_at": 200.0})
    settle_status(run.path, 100.0, killed, replace_failed=False)  # the main process was killed mid-step
    assert run.read_status()["status"] == "failed"
    assert (
        describe_failure(None, -15) == "the launcher of the training's processes was ended by SIGTERM (see its output)"
    )


def test_a_malformed_peer_timeout_is_named(monkeypatch):
    from kinject.settings.stages import ConfigError
    from kinject.training.processes import PEER_TIMEOUT_S, peer_timeout_s

    monkeypatch.delenv("KINJECT_PEER_TIMEOUT_S", raising=False)
    assert peer_timeout_s() == PEER_TIMEOUT_S
    monkeypatch.setenv("KINJECT_PEER_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="KINJECT_PEER_TIMEOUT_S"):
        peer_timeout_s()


def test_a_collective_that_timed_out_is_told_as_a_silent_process(monkeypatch):
    from kinject.training.loop import explain_failure

    gloo = RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 1800000ms for recv operation")
    monkeypatch.setenv("WORLD_SIZE", "2")
    message = explain_failure(gloo, " at step 22")
    assert message.startswith("another process of this training did not answer within 1800 s at step 22"), message
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert explain_failure(gloo, " at step 22").startswith("RuntimeError at step 22")
