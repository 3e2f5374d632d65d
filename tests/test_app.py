"""The web app driven through gradio_client by the field names of the config dataclasses: prepare over loopback,
train in the background, poll, and the forms generated from the configs."""

from __future__ import annotations

import shlex
import time

import pytest

from kinject.config import PRESET_FIELDS, AugmentConfig, BlocksConfig, TrainConfig, describe_fields
from kinject.runs import RunDir


@pytest.fixture
def app_client(tmp_path, monkeypatch):
    from gradio_client import Client

    import app

    monkeypatch.setattr(app, "RUNS_ROOT", tmp_path / "runs")
    demo = app.build_ui()
    demo.queue().launch(
        server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, show_error=True
    )
    try:
        yield app, Client(demo.local_url, verbose=False)
    finally:
        demo.close()
        app.CHAT.stop()


def _prepare(client, site, model_dir, name="p5"):
    return client.predict(
        run_name=name,
        urls=f"{site}/ec2-p5.html\n{site}/404\n",
        files=None,
        model=str(model_dir),
        block_size=64,
        allow_private_urls=True,
        api_name="/prepare",
    )


def _wait_done(client, run: str) -> str:
    deadline = time.time() + 180
    while time.time() < deadline:
        status, _, _ = client.predict(run=run, api_name="/poll")
        if "done" in status or "failed" in status:
            return status
        time.sleep(0.5)
    return status


def test_prepare_reports_each_source(app_client, site, tiny_model_dir):
    app, client = app_client
    table, summary, _ = _prepare(client, site, tiny_model_dir)
    rows = table["data"]
    assert [r[0] for r in rows] == ["ok", "error"] and "HTTP 404" in rows[1][5]
    assert "1/2 sources used" in summary
    assert RunDir(app.RUNS_ROOT / "p5").section("blocks")["block_size"] == 64


def test_prepare_summary_gives_a_pasteable_command(app_client, site, tiny_model_dir):
    _, client = app_client
    _, summary, _ = _prepare(client, site, tiny_model_dir)
    command = summary.split("CLI equivalent: `", 1)[1].split("`", 1)[0]
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "kinject", "prepare"]
    assert "--block-size" in argv and argv[argv.index("--block-size") + 1] == "64"
    assert "--allow-private-urls" in argv and f"{site}/404" in argv


def test_train_in_the_background_and_poll(app_client, site, tiny_model_dir):
    app, client = app_client
    _prepare(client, site, tiny_model_dir)
    _, _, _, cli = client.predict(
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
    run = RunDir(app.RUNS_ROOT / "p5")
    assert run.has_adapter() and run.read_adapter_meta()["train"]["seed"] == 3
    runs_rows = client.predict(api_name="/runs")["data"]
    assert runs_rows[0][0] == "p5" and runs_rows[0][1] == "done"


def test_generated_data_is_shown_with_why_it_was_not_kept(app_client, site, tiny_model_dir):
    from kinject.augment import augmentation_key
    from kinject.config import AugmentConfig

    app, client = app_client
    _prepare(client, site, tiny_model_dir)
    run = RunDir(app.RUNS_ROOT / "p5")
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
    with pytest.raises(Exception, match="at least one URL or file"):
        client.predict(run_name="x", urls="", files=None, api_name="/prepare")


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
    import app

    monkeypatch.delenv("KINJECT_AUTH", raising=False)
    monkeypatch.delenv("KINJECT_ALLOW_NO_AUTH", raising=False)
    with pytest.raises(SystemExit, match="without authentication"):
        app._auth_for("0.0.0.0")
    assert app._auth_for("127.0.0.1") is None
    monkeypatch.setenv("KINJECT_AUTH", "me:secret")
    assert app._auth_for("0.0.0.0") == [("me", "secret")]


def test_a_preset_named_by_an_api_call_fills_what_the_call_leaves_out():
    import app

    sent = {"preset": "cpu-demo", "use_qa": True, "replay_share": 0.2, "epochs": 3.0}  # the first two: knowledge's
    # An API call: the form still shows the default preset, so its values mean "not set".
    assert app._preset_settings(sent, "knowledge") == {**sent, "use_qa": False, "replay_share": 0.0}
    # In the browser the form shows cpu-demo's values once it is chosen: what the user then ticks is theirs.
    assert app._preset_settings(sent, "cpu-demo") == sent
    assert app.apply_preset("cpu-demo")[-1] == "cpu-demo"


def test_chat_with_base_adapter_and_both_side_by_side(app_client, site, tiny_model_dir):
    app, client = app_client
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
    assert app.CHAT.target(RunDir(app.RUNS_ROOT / "p5")).adapter == "p5"
    # A second turn carries the conversation on each side.
    left2, right2, _ = chat("And how many?", "adapter", compare=True, left=left, right=right)
    assert len(left2) == len(right2) == 4 and left2[:2] == left
    with pytest.raises(Exception, match="no merged model"):
        chat("Hi?", "merged")


def test_chat_works_while_a_training_job_runs(app_client, site, tiny_model_dir):
    app, client = app_client
    _prepare(client, site, tiny_model_dir)
    client.predict(run="p5", preset="cpu-demo", epochs=5000, quantization="none", api_name="/train")
    try:
        deadline = time.time() + 60
        while not app.JOBS.running() and time.time() < deadline:
            time.sleep(0.2)
        assert app.JOBS.running()
        chat = {"message": "Hi?", "talk_to": "base", "compare": False, "left": [], "right": []}
        left, _, _ = client.predict(run="p5", **chat, max_new_tokens=4, api_name="/chat")
        assert [m["role"] for m in left] == ["user", "assistant"]
        assert app.JOBS.running()  # the chat did not wait for, or stop, the training
    finally:
        client.predict(run="p5", api_name="/stop")
        deadline = time.time() + 60
        while app.JOBS.running() and time.time() < deadline:
            time.sleep(0.2)
