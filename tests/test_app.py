"""The web app driven through gradio_client by the field names of the config dataclasses: prepare over loopback,
train in the background, poll, and the forms generated from the configs."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest
from httpserver import SiteServer

from kinject.runs import RunDir
from kinject.settings.fields import describe_fields
from kinject.settings.presets import DEFAULT_PRESET, PRESET_FIELDS, PRESETS
from kinject.settings.services import AppConfig
from kinject.settings.stages import AugmentConfig, BlocksConfig
from kinject.settings.training import TrainConfig
from kinject.web.views import RUNS_COLUMNS, job_line, status_text, training_line
from kinject.web.words import app_text

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_client(tmp_path, monkeypatch):
    from gradio_client import Client

    from kinject.web import state
    from kinject.web.layout import build_ui

    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs")
    demo = build_ui(AppConfig(allow_private_urls=True))  # the operator lets the tests fetch from loopback
    demo.queue().launch(
        server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, show_error=True
    )
    try:
        yield state, Client(demo.local_url, verbose=False)
    finally:
        demo.close()
        state.CHAT.stop()


def _prepare(client, site, model_dir, name="p5"):
    return client.predict(
        run_name=name,
        urls=f"{site}/ec2-p5.html\n{site}/404\n",
        files=None,
        model=str(model_dir),
        block_size=64,
        api_name="/prepare",
    )


def _wait_done(client, run: str) -> str:
    deadline = time.time() + 180
    while time.time() < deadline:
        status = client.predict(run=run, api_name="/poll")[0]
        if "done" in status or "failed" in status:
            return status
        time.sleep(0.5)
    return status


def test_prepare_reports_each_source(app_client, site, tiny_model_dir):
    state, client = app_client
    result = _prepare(client, site, tiny_model_dir)
    table, summary, *_ = result
    rows = table["data"]
    assert [r[0] for r in rows] == ["ok", "error"] and "HTTP 404" in rows[1][5]
    assert "1/2 sources used" in summary
    assert RunDir(state.RUNS_ROOT / "p5").section("blocks")["block_size"] == 64
    # The prepare fills the Train form with the new run's values itself (not the run picker's later change).
    named = _named(client, "/prepare", result)
    assert named["Preset"] == DEFAULT_PRESET and named["Lora r"] == PRESETS[DEFAULT_PRESET]["train"]["lora_r"]


def test_prepare_summary_gives_a_pasteable_command(app_client, site, tiny_model_dir):
    _, client = app_client
    _, summary, *_ = _prepare(client, site, tiny_model_dir)
    command = summary.split("CLI equivalent: `", 1)[1].split("`", 1)[0]
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "kinject", "prepare"]
    assert "--block-size" in argv and argv[argv.index("--block-size") + 1] == "64"
    assert "--allow-private-urls" in argv and f"{site}/404" in argv


def test_train_in_the_background_and_poll(app_client, site, tiny_model_dir):
    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    cli = client.predict(
        run="p5",
        preset="cpu-demo",
        epochs=2,
        learning_rate=5e-3,
        lora_r=4,
        lora_alpha=8,
        quantization="none",
        eval_at_end=False,
        block_size=64,
        seed=3,
        api_name="/train",
    )
    assert "python -m kinject train" in cli and "--lora-r 4" in cli and "--seed 3" in cli
    assert "done" in _wait_done(client, "p5")
    run = RunDir(state.RUNS_ROOT / "p5")
    assert run.has_adapter() and run.read_adapter_meta()["train"]["seed"] == 3
    runs_rows = client.predict(api_name="/runs")["data"]
    row = dict(zip(RUNS_COLUMNS, runs_rows[0], strict=True))
    assert row["run"] == "p5" and row["status"] == "done" and row["preset"] == "cpu-demo"
    assert row["steps"] and row["final loss"] and row["model"] == tiny_model_dir.name


def test_generated_data_is_shown_with_why_it_was_not_kept(app_client, site, tiny_model_dir):
    from kinject.augment import augmentation_key
    from kinject.settings.stages import AugmentConfig

    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    run = RunDir(state.RUNS_ROOT / "p5")
    rows = [
        {"kind": "qa", "passage": "d1p1", "question": "What powers P5?", "answer": "H100 GPUs.", "kept": True},
        {
            "kind": "paraphrase",
            "passage": "d1p1",
            "instruction": "plain",
            "text": "P5 has 4 TB.",
            "kept": False,
            "reason": "drops or changes 2 tb",
        },
    ]
    key = augmentation_key("qa", AugmentConfig(), "x", "m")
    run.save_augmentation(key, rows, {"kind": "qa", "key": key})
    table = client.predict(run="p5", api_name="/augmentation")["data"]
    assert ["qa", "d1p1", "What powers P5?", "H100 GPUs.", "yes", ""] in table
    assert any(r[0] == "paraphrase" and r[4] == "no" and "2 tb" in r[5] for r in table)


def test_prepare_without_sources_is_a_clear_error(app_client):
    _, client = app_client
    _, summary, *_ = client.predict(run_name="x", urls="", files=None, api_name="/prepare")
    assert "Nothing prepared" in summary and "at least one URL or file" in summary


def test_every_train_setting_is_a_control_of_the_train_endpoint(app_client):
    _, client = app_client
    params = {
        p["parameter_name"]
        for p in client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/train"]["parameters"]
    }
    fields = {i.name for cls in (TrainConfig, BlocksConfig, AugmentConfig) for i in describe_fields(cls)}
    assert fields <= params


def test_preset_change_fills_the_preset_fields(app_client):
    _, client = app_client
    values = client.predict(preset="case-study", api_name="/preset_values")
    names = PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"]
    got = dict(zip(names, values, strict=True))
    assert got["learning_rate"] == 2e-4 and got["lora_r"] == 64 and got["block_size"] == 2048


def test_auth_required_off_loopback(monkeypatch):
    from kinject.web.auth import auth_for

    monkeypatch.delenv("KINJECT_AUTH", raising=False)
    monkeypatch.delenv("KINJECT_ALLOW_NO_AUTH", raising=False)
    with pytest.raises(SystemExit, match="without authentication"):
        auth_for("0.0.0.0")
    assert auth_for("127.0.0.1") is None
    monkeypatch.setenv("KINJECT_AUTH", "me:long-secret")
    assert auth_for("0.0.0.0") == [("me", "long-secret")]


def test_a_preset_named_by_an_api_call_fills_what_the_call_leaves_out():
    from kinject.settings.resolve import preset_settings
    from kinject.web.forms import apply_preset

    sent = {"preset": "cpu-demo", "use_qa": True, "replay_share": 0.4, "epochs": 3.0}  # the first two: knowledge's
    # An API call: the form still shows the default preset, so its values mean "not set".
    assert preset_settings(sent, "knowledge") == {**sent, "use_qa": False, "replay_share": 0.0}
    # In the browser the form shows cpu-demo's values once it is chosen: what the user then ticks is theirs.
    assert preset_settings(sent, "cpu-demo") == sent
    assert apply_preset("cpu-demo")[-1] == "cpu-demo"


def test_chat_with_base_adapter_and_both_side_by_side(app_client, site, tiny_model_dir):
    state, client = app_client
    _prepare(client, site, tiny_model_dir)

    def chat(message, talk_to, compare=False, left=None, right=None):
        return client.predict(
            run="p5",
            message=message,
            talk_to=talk_to,
            compare=compare,
            left=left or [],
            right=right or [],
            max_new_tokens=6,
            api_name="/chat",
        )

    with pytest.raises(Exception, match="no adapter model: train one first"):
        chat("Hi?", "adapter")
    left, _, box = chat("Hi?", "base")
    assert [m["role"] for m in left] == ["user", "assistant"] and box == ""
    client.predict(run="p5", preset="cpu-demo", epochs=2, learning_rate=5e-2, quantization="none", api_name="/train")
    assert "done" in _wait_done(client, "p5")
    # Trained since the server loaded the run: the new adapter is served, beside the base, in compare mode.
    left, right, _ = chat("What GPUs do P5 instances have?", "adapter", compare=True)
    assert [m["role"] for m in left] == [m["role"] for m in right] == ["user", "assistant"]
    assert state.CHAT.target(RunDir(state.RUNS_ROOT / "p5")).adapter == "p5"
    # A second turn carries the conversation on each side.
    left2, right2, _ = chat("And how many?", "adapter", compare=True, left=left, right=right)
    assert len(left2) == len(right2) == 4 and left2[:2] == left
    with pytest.raises(Exception, match="no merged model"):
        chat("Hi?", "merged")


def test_chat_works_while_a_training_job_runs(app_client, site, tiny_model_dir):
    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    client.predict(run="p5", preset="cpu-demo", epochs=5000, quantization="none", api_name="/train")
    try:
        deadline = time.time() + 60
        while not state.JOBS.running() and time.time() < deadline:
            time.sleep(0.2)
        assert state.JOBS.running()
        chat = {"message": "Hi?", "talk_to": "base", "compare": False, "left": [], "right": []}
        left, _, _ = client.predict(run="p5", **chat, max_new_tokens=4, api_name="/chat")
        assert [m["role"] for m in left] == ["user", "assistant"]
        assert state.JOBS.running(), state.JOBS.state()  # the chat did not wait for, or stop, the training
    finally:
        client.predict(run="p5", api_name="/stop")
        deadline = time.time() + 60
        while state.JOBS.running() and time.time() < deadline:
            time.sleep(0.2)


# ------------------------------------------------------------------------------------- the app as a product


def _named(client, endpoint: str, values) -> dict:
    """An endpoint's outputs by their controls' labels (gradio_client returns them in order, without states); a
    control that is an output twice (a form's value, then its lock) is named by its first."""
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]
    pairs = list(zip([r["label"] for r in api["returns"]], values, strict=True))
    return dict(reversed(pairs))


def _wait_for(predicate, timeout: float = 120, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def _stop_and_wait(state, client, run="p5"):
    client.predict(run=run, api_name="/stop")
    _wait_for(lambda: not state.JOBS.running(), timeout=60)


CUSTOM = {"preset": "cpu-demo", "learning_rate": 3e-3, "lora_r": 4, "lora_alpha": 8, "seed": 5, "max_steps": 4000}


def _start_custom(state, client, **extra):
    """A long cpu-demo training with custom settings, a checkpoint every 2 steps; waits for its third step."""
    client.predict(
        run="p5", quantization="none", eval_at_end=False, save_steps=2, **CUSTOM, **extra, api_name="/train"
    )
    _wait_for(lambda: state.JOBS.state().phase == "train" and state.JOBS.state().step >= 3)


def test_reloading_during_a_job_shows_the_job_s_real_settings(app_client, site, tiny_model_dir):
    from kinject.web.handlers import button_states

    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    _start_custom(state, client)
    try:
        # A new page (another browser, a reload): the job's run is selected and the form holds the job's settings,
        # not the default preset's.
        loaded = _named(client, "/load", client.predict(api_name="/load"))
        assert loaded["Run"]["value"] == "p5"
        assert loaded["Preset"] == "cpu-demo" and loaded["Lora r"] == 4 and loaded["Seed"] == 5
        assert loaded["Learning rate"] == 3e-3 and loaded["Max steps"] == 4000 and loaded["Eval at end"] is False
        assert loaded["Epochs"] == 20  # cpu-demo's, which the job runs with
        shown = _named(client, "/run_settings", client.predict(run="p5", api_name="/run_settings"))
        assert {k: shown[k] for k in ("Preset", "Lora r", "Save steps")} == {
            "Preset": "cpu-demo",
            "Lora r": 4,
            "Save steps": 2,
        }
        # While it runs: Stop makes sense, Start, Resume, Evaluate, Ask, Merge, Export, Delete and Push do not.
        interactive = [b["interactive"] for b in button_states("p5")]
        assert interactive == [False, False, False, True, False, False, False, False, False, False]
    finally:
        _stop_and_wait(state, client)


def test_resume_after_a_custom_preset_continues_that_preset(app_client, site, tiny_model_dir):
    from kinject.web.handlers import button_states

    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    _start_custom(state, client)
    _stop_and_wait(state, client)
    run = RunDir(state.RUNS_ROOT / "p5")
    stopped_at = run.read_adapter_meta()["step"]
    blocks = run.section("blocks")
    resume, start = button_states("p5")[2], button_states("p5")[1]
    assert resume["interactive"] and start["interactive"]
    # The form as a fresh page shows it (from config.yaml), sent back as is; then the worst case, an API call that
    # sends the default preset's values: both continue the saved configuration.
    shown = _named(client, "/run_settings", client.predict(run="p5", api_name="/run_settings"))
    assert shown["Preset"] == "cpu-demo" and shown["Lora r"] == 4
    for sent in ({"preset": "cpu-demo", "lora_r": 4, "seed": 5}, {"preset": "knowledge", "epochs": 15}):
        cli = client.predict(run="p5", **sent, eval_at_end=False, api_name="/resume")
        assert shlex.split(cli.split("`")[1]) == ["python", "-m", "kinject", "train", str(run.path), "--resume"]
        _wait_for(lambda at=stopped_at: state.JOBS.state().phase == "train" and state.JOBS.state().step > at)
        job = state.JOBS.state()
        assert job.total == 4000 and job.step > stopped_at
        saved = run.section("train")
        assert saved["preset"] == "cpu-demo" and saved["lora_r"] == 4 and saved["learning_rate"] == 3e-3
        assert run.section("blocks") == blocks
        _stop_and_wait(state, client)
        assert run.read_adapter_meta()["train"]["preset"] == "cpu-demo"
        stopped_at = run.read_adapter_meta()["step"]


def test_evaluation_reports_progress_and_a_stop_keeps_what_it_scored(app_client, site, tiny_model_dir):
    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    client.predict(run="p5", preset="cpu-demo", max_steps=2, quantization="none", api_name="/train")
    assert "done" in _wait_done(client, "p5")
    job = client.submit(
        run="p5", auto_probes=8, max_new_tokens=200, quick="off", kl_max_new_tokens=8, api_name="/evaluate"
    )

    def count() -> tuple[int, int] | None:
        found = re.search(r"evaluate, (\d+)/(\d+) answers", client.predict(run="p5", api_name="/poll")[0])
        return (int(found[1]), int(found[2])) if found else None

    first, total = _wait_for(lambda: (c := count()) and c[0] >= 2 and c)
    assert total > 8 and total % 2 == 0  # each probe on both sides, then 8 KL prompts
    _wait_for(lambda: (c := count()) and c[0] > first)  # it advances
    client.predict(run="p5", api_name="/stop")
    scores, _, answers, status = job.result(timeout=120)
    data = RunDir(state.RUNS_ROOT / "p5").read_eval()
    assert data["stopped"] is True and 1 <= len(data["probes"]) < data["settings"]["probes_planned"]
    assert "stopped" in status and "stopped after" in scores
    assert re.search(r"\| \d\.\d\d \(\d+/\d+\) \|", scores)  # a fraction with its counts
    assert len(answers["data"]) == len(data["probes"])
    assert all(p["adapter"] is not None for p in data["probes"])  # each kept probe was answered by both sides


def test_each_fixed_message_names_the_control_to_change(app_client, site, tiny_model_dir):
    from kinject.web.handlers import delete_run

    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    # An existing run name: the checkbox that replaces it, not --force.
    _, summary, *_ = _prepare(client, site, tiny_model_dir)
    assert "Replace an existing run of that name" in summary and "--force" not in summary
    # Resume before any training: the Start button.
    with pytest.raises(Exception, match="nothing to resume: press Start"):
        client.predict(run="p5", api_name="/resume")
    # Chat with a merged model that does not exist: the Merge button, or the Talk to choice.
    chat = {"message": "Hi?", "compare": False, "left": [], "right": [], "max_new_tokens": 2}
    with pytest.raises(Exception, match=r"merge it first \(Merge, Runs tab\).*“base” in Talk to"):
        client.predict(run="p5", talk_to="merged", **chat, api_name="/chat")
    # Delete without typing the name: the confirmation box, as a warning (an error would badge the run picker).
    client.predict(run="p5", confirm="", api_name="/delete_run")
    assert (state.RUNS_ROOT / "p5").is_dir()
    with pytest.warns(UserWarning, match="type its name in “Type the run's name to confirm”"):
        delete_run("p5", "")
    # Ask while a job runs: which job, and the Stop button.
    client.predict(run="p5", preset="cpu-demo", max_steps=4000, quantization="none", api_name="/train")
    try:
        _wait_for(lambda: state.JOBS.state().phase == "train")
        with pytest.raises(Exception, match=r"Ask must wait: training of p5 \(train.*Press Stop"):
            client.predict(run="p5", question="Hi?", max_new_tokens=2, api_name="/ask")
        with pytest.raises(Exception, match=r"Training must wait: training of p5 .* Press Stop"):
            client.predict(run="p5", api_name="/train")
    finally:
        _stop_and_wait(state, client)
    # The verbs' CLI hints, as the app shows them.
    assert app_text("x exists; choose another --out or pass --force to replace it") == (
        "x exists; choose another Run name, or tick “Replace an existing run of that name” (Prepare tab)"
    )
    assert app_text("free space and resume with --resume") == "free space and press Resume (Train tab)"
    assert "--" not in app_text("train it on raw text (--preset cpu-demo, or --no-use-qa --replay-share 0)")


def test_the_equivalent_command_survives_shlex_and_runs(app_client, site, tiny_model_dir, tmp_path, monkeypatch):
    import subprocess
    import sys

    state, client = app_client
    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs with 'quotes' and spaces")
    _prepare(client, site, tiny_model_dir)
    cli = client.predict(
        run="p5", preset="cpu-demo", max_steps=2, lora_r=4, quantization="none", seed=7, api_name="/train"
    )
    assert "done" in _wait_done(client, "p5")
    run = RunDir(state.RUNS_ROOT / "p5")
    trained_by_app = run.section("train")
    argv = shlex.split(cli.split("CLI equivalent: `", 1)[1].rsplit("`", 1)[0])
    assert argv[:5] == ["python", "-m", "kinject", "train", str(run.path)]
    done = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert run.section("train") == trained_by_app and run.read_adapter_meta()["step"] == 2


def test_runs_tab_deletes_compares_and_shows_sources(app_client, site, tiny_model_dir):
    state, client = app_client
    _prepare(client, site, tiny_model_dir, name="a")
    _prepare(client, site, tiny_model_dir, name="b")
    rows = {r[0]: dict(zip(RUNS_COLUMNS, r, strict=True)) for r in client.predict(api_name="/runs")["data"]}
    assert set(rows) == {"a", "b"} and rows["a"]["status"] == "prepared" and rows["a"]["date"]
    text, generated = client.predict(run="a", source=f"{site}/ec2-p5.html", api_name="/source")
    assert "H100" in text and not any(any(cell for cell in row) for row in generated["data"])
    for name in ("a", "b"):
        RunDir(state.RUNS_ROOT / name).write_eval(
            {"base": {"knowledge_accuracy": 0.25, "knowledge_correct": 1, "knowledge_scored": 4}, "probes": []},
            "",
            lambda path: path.write_bytes(b""),
        )
    compared = client.predict(first="a", second="b", api_name="/compare")
    assert "| a | b |" in compared and "0.25 (1/4)" in compared
    dashboard = client.predict(run="a", api_name="/dashboard")  # how to open the run's tracked curves
    assert "trackio show --project kinject" in dashboard and "run **a**" in dashboard
    client.predict(run="b", confirm="b", api_name="/delete_run")
    assert not (state.RUNS_ROOT / "b").exists() and (state.RUNS_ROOT / "a").exists()


def test_status_and_plot_glitches(tmp_path):
    """No "queued ()", the checkpoint's epoch after a resume, rounded numbers, and a single loss point drawn on an
    integer step axis."""
    from kinject.runtime.jobs import StatusRecorder
    from kinject.web.eval_view import loss_figure

    run = RunDir(tmp_path)
    run.write_config({"model": {"model": "m"}})
    for step in (1, 2, 3):
        run.append_metric({"step": step, "epoch": step / 10, "loss": 1.234567})
    recorder = StatusRecorder(run)
    assert job_line(recorder.snapshot()) == f"queued: training of {run.name}"
    run.trim_metrics(2)  # as a resume does before it starts
    recorder.start("train", total=20, unit="step")
    recorder.advance(2, resumed_from="checkpoint-2")
    state = recorder.snapshot()
    assert (state.step, state.phase_done, state.epoch) == (2, 2, 0.2)
    assert training_line(state).startswith("Training: step 2/20 · epoch 0.20 · loss 1.235")
    assert "(train, 2/20 steps)" in job_line(state)

    run.clear_metrics()
    run.append_metric({"step": 1, "loss": 2.5})
    axes = loss_figure(run).axes[0]
    (line,) = axes.get_lines()
    assert line.get_marker() == "o" and list(line.get_xdata()) == [1]
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_merge_and_export_buttons_run_jobs_with_progress(app_client, site, tiny_model_dir):
    state, client = app_client
    _prepare(client, site, tiny_model_dir)
    for api_name in ("/merge", "/export"):
        with pytest.raises(Exception, match=r"train it first \(Start, Train tab\)"):
            client.predict(run="p5", api_name=api_name)
    client.predict(run="p5", preset="cpu-demo", max_steps=2, quantization="none", eval_at_end=False, api_name="/train")
    assert "done" in _wait_done(client, "p5")
    status = client.predict(run="p5", api_name="/merge")
    assert "done: merge of p5" in status and "merged into" in status
    assert (RunDir(state.RUNS_ROOT / "p5").merged_dir / "config.json").is_file()
    status = client.predict(run="p5", api_name="/export")
    assert "done: export of p5" in status and "ollama create p5 -f " in status and "llama-cli -m " in status
    assert sorted(RunDir(state.RUNS_ROOT / "p5").export_files()) == ["Modelfile", "model-q8_0.gguf"]
    status = client.predict(run="p5", what="lora", types="f16", api_name="/export")  # the form's Export settings
    assert "ollama create p5 -f " in status and "Modelfile.adapter" in status and "--lora " in status
    assert sorted(RunDir(state.RUNS_ROOT / "p5").export_files()) == [
        "Modelfile.adapter",
        "adapter.gguf",
        "base-f16.gguf",
    ]


def test_a_handler_reads_its_own_jobs_outcome_not_the_last_one(tmp_path, monkeypatch):
    """Two users: a push ends, then a merge another user started fails; the push's handler still reports the push."""
    import gradio as gr

    from kinject.runtime.jobs import JobManager, JobOutcome
    from kinject.web import state
    from kinject.web.handlers import job_finished, wait_for_job

    jobs = JobManager()
    monkeypatch.setattr(state, "JOBS", jobs)

    def fail(recorder):
        raise RuntimeError("the merge failed")

    pushed = jobs.submit(RunDir(tmp_path), "push", lambda recorder: JobOutcome("done", "pushed A"), persist=False)
    jobs.wait(10)
    merged = jobs.submit(RunDir(tmp_path), "merge", fail, persist=False)
    jobs.wait(10)
    assert merged.job_id == pushed.job_id + 1
    assert job_finished(pushed).message == "pushed A"
    with pytest.raises(gr.Error, match="the merge failed"):
        job_finished(merged)
    assert list(wait_for_job(None, pushed)) == [status_text(None)], "an ended job is not waited for"


def test_an_empty_answer_is_shown_as_such():
    from kinject.models.generate import EMPTY_ANSWER, shown_answer

    assert shown_answer("  \n") == EMPTY_ANSWER and "ended its turn" in EMPTY_ANSWER
    assert shown_answer(" H100 GPUs.\n") == "H100 GPUs."


def test_the_evaluate_tab_says_when_the_adapter_answers_no_more_than_the_base():
    from kinject.web.eval_view import eval_summary

    side = {"knowledge_accuracy": 0.25, "knowledge_correct": 1, "knowledge_scored": 4}
    assert "no more knowledge probes than the base (1 of 4 against 1 of 4)" in eval_summary(
        {"base": side, "adapter": dict(side)}
    )
    assert "no more knowledge probes" not in eval_summary({"base": side, "adapter": {**side, "knowledge_correct": 2}})


def test_the_app_api_cannot_allow_private_addresses(
    site, site_server: SiteServer, tmp_path, monkeypatch, tiny_model_dir
):
    from gradio_client import Client

    from kinject.web import state
    from kinject.web.layout import build_ui

    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs")
    demo = build_ui(AppConfig())  # the operator allowed nothing
    demo.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        client = Client(demo.local_url, verbose=False)
        api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/prepare"]
        names = {p["parameter_name"] for p in api["parameters"]}
        assert "urls" in names and "block_size" in names
        assert not names & {"allow_private_urls", "allowed_networks"}
        before = len(site_server.requests)
        # Naming the operator's settings is refused; leaving them out, loopback stays refused.
        with pytest.raises(Exception, match="allow_private_urls"):
            client.predict(
                run_name="x",
                urls=f"{site}/ec2-p5.html",
                model=str(tiny_model_dir),
                allow_private_urls=True,
                api_name="/prepare",
            )
        with pytest.raises(Exception, match="allowed_networks"):
            client.predict(run_name="x", urls=f"{site}/ec2-p5.html", allowed_networks="0.0.0.0/0", api_name="/prepare")
        table, summary, *_ = client.predict(
            run_name="x", urls=f"{site}/ec2-p5.html", model=str(tiny_model_dir), api_name="/prepare"
        )
        (row,) = table["data"]
        assert row[0] == "error" and "is a loopback address" in row[5]
        assert "Nothing prepared" in summary
        assert len(site_server.requests) == before  # the server was never reached
        assert not (tmp_path / "runs" / "x").exists()
    finally:
        demo.close()
        state.CHAT.stop()
