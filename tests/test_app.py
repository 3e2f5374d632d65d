"""The web app driven through gradio_client: prepare over loopback, train in the background, poll, stop refusal."""

from __future__ import annotations

import time

import pytest


@pytest.fixture
def app_client(tmp_path, monkeypatch):
    from gradio_client import Client

    import app

    monkeypatch.setattr(app, "RUNS_ROOT", tmp_path / "runs")
    demo = app.build_ui()
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield app, Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def test_prepare_train_and_poll(app_client, site, tiny_model_dir):
    app, client = app_client
    urls = f"{site}/ec2-p5.html\n{site}/404\n"
    table, summary, _ = client.predict(urls, None, "p5", str(tiny_model_dir), 64, True, False, api_name="/prepare")
    rows = table["data"]
    assert [r[0] for r in rows] == ["ok", "error"] and "HTTP 404" in rows[1][5]
    assert "1/2 sources used" in summary and "python -m kinject prepare" in summary
    assert (app.RUNS_ROOT / "p5" / "blocks.json").is_file()

    status, _, _, cli = client.predict("p5", "cpu-demo", 2, 5e-3, 4, 8, 1, "none", False, "raw", api_name="/train")
    assert "python -m kinject train" in cli and "--rank 4" in cli
    deadline = time.time() + 180
    while time.time() < deadline:
        status, _, _ = client.predict("p5", api_name="/poll")
        if "done" in status or "failed" in status:
            break
        time.sleep(0.5)
    assert "done" in status, status
    assert (app.RUNS_ROOT / "p5" / "adapter" / "adapter_model.safetensors").is_file()
    runs_rows = client.predict(api_name="/runs")["data"]
    assert runs_rows[0][0] == "p5" and runs_rows[0][1] == "done"


def test_prepare_without_sources_is_a_clear_error(app_client):
    _, client = app_client
    with pytest.raises(Exception, match="at least one URL or file"):
        client.predict("", None, "x", "smollm2-135m-instruct", 512, False, False, api_name="/prepare")


def test_auth_required_off_loopback(monkeypatch):
    import app

    monkeypatch.delenv("KINJECT_AUTH", raising=False)
    monkeypatch.delenv("KINJECT_ALLOW_NO_AUTH", raising=False)
    with pytest.raises(SystemExit, match="without authentication"):
        app._auth_for("0.0.0.0")
    assert app._auth_for("127.0.0.1") is None
    monkeypatch.setenv("KINJECT_AUTH", "me:secret")
    assert app._auth_for("0.0.0.0") == [("me", "secret")]
