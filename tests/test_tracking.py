"""Experiment tracking: a short training on a tiny model tracks its loss curve, its forgetting guard's checks and the
data report's counts into a local trackio project (then the evaluation's scores into the same run), or TensorBoard
event files into the run folder, or nothing; the tracked settings hold no secret and no URL's query; a tracker that
fails never breaks the training."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_fixtures import TINY_BLOCKS

from kinject.runs import RunDir, open_run_tracker, viewing_command
from kinject.runtime.progress import RecordingProgress
from kinject.runtime.tracking import clean_config, dashboard_command, open_tracker
from kinject.settings.stages import EvalConfig, GenerationConfig
from kinject.settings.training import TrainConfig
from kinject.training.pipeline import train

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 4
STEPS = 4
DATA_REPORT = {"facts": 7, "asked": 5, "well_asked": 3, "well_asked_at": 4, "questions": 21, "per_fact": []}


def quick(**kw) -> TrainConfig:
    base = dict(preset="cpu-demo", max_steps=STEPS, quantization="none", cpu_bf16="off", guard_checks=2)
    return TrainConfig(**{**base, "guard_kl_max": 1e9, **kw})


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> Path:
    """This test's own trackio folder (not created: a test may check that nothing made it)."""
    folder = tmp_path / "tracking"
    monkeypatch.setenv("KINJECT_TRACKING", str(folder))
    return folder


def _trackio_logs(project: str, name: str) -> list[dict]:
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_logs(project, name)


def _steps(logs: list[dict], metric: str) -> list[int]:
    return [row["step"] for row in logs if metric in row]


def test_a_training_tracks_its_curves_and_its_evaluation_with_trackio(tiny_run, tracking):
    from trackio.sqlite_storage import SQLiteStorage

    from kinject.eval import evaluate

    RunDir(tiny_run).write_data_report(DATA_REPORT)
    result = train(tiny_run, quick(), blocks=TINY_BLOCKS)
    assert result.status == "done"
    assert (tracking / "kinject.db").is_file()  # trackio's local storage, where KINJECT_TRACKING says
    logs = _trackio_logs("kinject", "run")
    assert _steps(logs, "train/loss") == list(range(1, STEPS + 1))
    for name in ("train/learning_rate", "train/tokens_per_s", "train/grad_norm"):
        assert _steps(logs, name) == list(range(1, STEPS + 1)), name
    assert _steps(logs, "guard/kl") == [2, 4] and _steps(logs, "guard/knowledge") == [2, 4]
    assert _steps(logs, "guard/kept_step") == [STEPS] and _steps(logs, "guard/base_knowledge") == [0]
    at_start = next(row for row in logs if row["step"] == 0)
    assert at_start["data/facts"] == 7 and at_start["data/asked"] == 5 and at_start["data/questions"] == 21
    assert not RunDir(tiny_run).tensorboard_dir.exists()

    quick_eval = EvalConfig(auto_probes=2, retention=False, forgetting=True, open_book=False, kl_max_new_tokens=4)
    evaluate(tiny_run, quick_eval, generation=GenerationConfig(max_new_tokens=4))
    assert SQLiteStorage.get_runs("kinject") == ["run"]  # the evaluation went on the training's tracked run
    logs = _trackio_logs("kinject", "run")
    assert _steps(logs, "eval/adapter/knowledge_accuracy") == [STEPS]
    assert _steps(logs, "eval/kl_mean") == [STEPS] and _steps(logs, "eval/base/knowledge_accuracy") == [STEPS]
    (config,) = SQLiteStorage.get_all_run_configs("kinject").values()
    assert config["train"]["report_to"] == "trackio" and config["train"]["max_steps"] == STEPS
    assert config["_Username"] is None  # trackio never asked the Hub who this is


def test_tensorboard_gets_event_files_with_the_loss_in_the_run_folder(tiny_run, tracking):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_run, quick(report_to="tensorboard"), blocks=TINY_BLOCKS)
    events = RunDir(tiny_run).tensorboard_dir
    assert any(p.name.startswith("events.out.tfevents") for p in events.iterdir())
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [s.step for s in accumulator.Scalars("train/loss")] == list(range(1, STEPS + 1))
    assert [s.step for s in accumulator.Scalars("guard/kl")] == [2, 4]
    assert not tracking.exists()  # nothing went to trackio


def test_a_fresh_training_that_fails_at_once_puts_the_earlier_event_files_back(tiny_run, tracking):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import TrainerCallback

    from kinject.training.loop import TrainError

    class FailAtFirstStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise RuntimeError("out of memory (simulated)")

    train(tiny_run, quick(report_to="tensorboard", guard_checks=0), blocks=TINY_BLOCKS)
    events = RunDir(tiny_run).tensorboard_dir
    before = sorted(p.name for p in events.iterdir())
    with pytest.raises(TrainError, match="simulated"):
        config = quick(report_to="tensorboard", guard_checks=0, max_steps=8)
        train(tiny_run, config, blocks=TINY_BLOCKS, callbacks=[FailAtFirstStep()])
    assert sorted(p.name for p in events.iterdir()) == before  # the earlier training's curves, as they were
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [s.step for s in accumulator.Scalars("train/loss")] == list(range(1, STEPS + 1))


def test_report_to_none_tracks_nothing(tiny_run, tracking):
    result = train(tiny_run, quick(report_to="none", guard_checks=0), blocks=TINY_BLOCKS)
    assert result.status == "done" and RunDir(tiny_run).read_metrics()  # the run's own records are kept
    assert not tracking.exists() and not RunDir(tiny_run).tensorboard_dir.exists()


def test_a_tracker_that_fails_never_breaks_the_training(tiny_run, tracking, monkeypatch):
    from kinject.runtime import tracking as backends

    def broken(self, metrics, step):
        raise OSError("database is locked")

    monkeypatch.setattr(backends._Trackio, "log", broken)
    progress = RecordingProgress()
    result = train(tiny_run, quick(guard_checks=0), progress, blocks=TINY_BLOCKS)
    assert result.status == "done" and result.step == STEPS
    said = [m for kind, m in progress.events if kind == "log" and "tracking" in m]
    assert len(said) == 1 and "database is locked" in said[0] and "training goes on" in said[0]


def test_a_backend_that_cannot_start_tracks_nothing_and_says_so(tmp_path, monkeypatch):
    from kinject.runtime import tracking as backends

    def refuse(*args, **kwargs):
        raise PermissionError("read-only folder")

    monkeypatch.setattr(backends, "_Trackio", refuse)
    said: list[str] = []
    tracker = open_tracker("trackio", "kinject", "r", {}, tmp_path, warn=said.append)
    tracker.log({"train/loss": 1.0}, 1)
    tracker.finish()
    assert tracker.backend == "none" and len(said) == 1 and "read-only folder" in said[0]
    tensorboard = open_tracker("tensorboard", "kinject", "r", {}, tmp_path, log_dir=None, warn=said.append)
    assert tensorboard.backend == "none" and len(said) == 2


SECRET_CONFIG = {
    "inputs": {
        "urls": ["https://alice:hunter2@example.com/news?id=7&sig=abc#top", "http://example.org/page"],
        "files": ["notes.txt"],
    },
    "augment": {"augment_generator": "https://user:pw@llm.internal:8080/v1?api_key=sk-123"},
    "generation": {"max_new_tokens": 20},
    "hf_token": "hf_secret",
    "serve": {"api_key": "sk-123", "auth": "alice:pw", "password": "x", "client_secret": "y", "keep": 1},
}


def test_the_tracked_settings_hold_no_secret_and_no_url_query():
    cleaned = clean_config(SECRET_CONFIG)
    text = repr(cleaned)
    for secret in ("hf_secret", "sk-123", "hunter2", "alice", "sig=abc", "?", "#top", "pw"):
        assert secret not in text, secret
    assert cleaned["inputs"]["urls"] == ["https://example.com/news", "http://example.org/page"]
    assert cleaned["augment"]["augment_generator"] == "https://llm.internal:8080/v1"
    assert cleaned["generation"] == {"max_new_tokens": 20}  # "tokens" is no secret
    assert cleaned["serve"] == {"keep": 1} and "hf_token" not in cleaned


def test_what_trackio_stores_as_settings_is_cleaned(tmp_path):
    from trackio.sqlite_storage import SQLiteStorage

    tracker = open_tracker("trackio", "secrets-check", "r", SECRET_CONFIG, tmp_path / "tracking")
    tracker.log({"train/loss": 1.0}, 1)
    tracker.finish()
    (stored,) = SQLiteStorage.get_all_run_configs("secrets-check").values()
    assert "hf_token" not in stored and "sk-123" not in repr(stored) and "?" not in repr(stored["inputs"])


def test_an_ablations_variants_share_one_project(tmp_path):
    parent = tmp_path / "announce"
    (parent / "ablation" / "raw_qa-seed42").mkdir(parents=True)
    (parent / "config.yaml").write_text("model: {model: x}\n")
    assert RunDir(parent / "ablation" / "raw_qa-seed42").tracking_names() == ("announce-ablation", "raw_qa-seed42")
    assert RunDir(parent).tracking_names() == ("kinject", "announce")


def test_the_viewing_command_names_the_project_and_the_folder(tmp_path, tracking):
    run = RunDir(tmp_path / "p5")
    command = viewing_command(run, "trackio")
    assert command == dashboard_command("kinject", tracking)
    assert command.startswith(f"TRACKIO_DIR={tracking} ") and command.endswith("trackio show --project kinject")
    assert viewing_command(run, "tensorboard") == f"tensorboard --logdir {run.tensorboard_dir}"
    assert viewing_command(run, "none") == ""


def test_a_run_tracker_of_a_damaged_config_still_tracks(tmp_path, tracking):
    run = RunDir(tmp_path / "odd")
    run.path.mkdir()
    run.config_path.write_text("[not a mapping\n")
    said: list[str] = []
    tracker = open_run_tracker(run, "trackio", warn=said.append)
    tracker.log({"train/loss": 2.0}, 1)
    tracker.finish()
    assert [row["train/loss"] for row in _trackio_logs("kinject", "odd")] == [2.0] and len(said) == 1


# ------------------------------------------------------------------------------------------------------- the app
def _web_run(name: str, report_to: str | None = None, losses: tuple[float, ...] = ()) -> RunDir:
    from kinject.web import state

    run = RunDir(state.RUNS_ROOT / name)
    run.path.mkdir(parents=True)
    run.write_config({"model": {"model": "tiny"}, **({"train": {"report_to": report_to}} if report_to else {})})
    for step, loss in enumerate(losses, start=1):
        run.append_metric({"step": step, "total": len(losses), "loss": loss})
    return run


def test_the_app_shows_the_command_that_opens_the_runs_dashboard(web_jobs, tracking):
    from kinject.web.tracking_view import dashboard_text

    _web_run("p5")
    text = dashboard_text("p5")
    assert dashboard_command("kinject", tracking) in text and "project **kinject**, run **p5**" in text
    tensorboard = _web_run("tb", "tensorboard")
    assert f"tensorboard --logdir {tensorboard.tensorboard_dir}" in dashboard_text("tb")
    _web_run("off", "none")
    assert "report_to none" in dashboard_text("off")
    assert dashboard_text(None).startswith("Choose a run")


def test_the_runs_tab_draws_two_runs_loss_curves_in_one_figure(web_jobs):
    from kinject.web import state
    from kinject.web.tracking_view import curves_figure

    _web_run("a", losses=(3.0, 2.5, 2.0))
    _web_run("b", losses=(3.1, 2.9))
    figure = curves_figure("a", "b")
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[0].get_xdata()) == [1, 2, 3] and list(lines[1].get_ydata()) == [3.1, 2.9]
    assert curves_figure(None, None) is None and curves_figure("a", None).axes[0].get_lines()[0].get_label() == "a"
    with pytest.raises(state.WebError):
        curves_figure("a", "../b")


def test_the_tracking_view_needs_no_gradio():
    import subprocess
    import sys

    code = "import sys, kinject.web.tracking_view; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
