"""Choosing the chat backend, and launching TGI: a stand-in ``text-generation-launcher`` on PATH records its
arguments and serves ``/health`` (TGI itself runs only in the Docker image)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from kinject.runs import RunDir
from kinject.serving.backends import BackendError, EmbeddedBackend, ExternalBackend, TGIBackend, choose_backend

TEXT = "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each has 8 GPUs.\n\n" * 4

STAND_IN = """#!{python}
import http.server, json, os, sys
with open(os.environ["LAUNCHER_RECORD"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("LAUNCHER_FAIL"):
    print("error: the stand-in was told to fail (CUDA not found)", flush=True)
    sys.exit(3)
port = int(sys.argv[sys.argv.index("--port") + 1])

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

print("stand-in TGI ready", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.fixture
def launcher(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "text-generation-launcher"
    exe.write_text(STAND_IN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "launches.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LAUNCHER_RECORD", str(record))
    monkeypatch.delenv("KINJECT_ENDPOINT", raising=False)
    monkeypatch.delenv("KINJECT_BACKEND", raising=False)
    return record


def launches(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.is_file() else []


def _give_adapter(run: Path) -> Path:
    folder = RunDir(run).adapter_dir
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_the_backend_follows_the_environment(launcher, monkeypatch):
    assert isinstance(choose_backend(), TGIBackend)  # the launcher is on PATH, as in the Docker image
    monkeypatch.setenv("KINJECT_BACKEND", "embedded")
    assert isinstance(choose_backend(), EmbeddedBackend)
    monkeypatch.setenv("KINJECT_ENDPOINT", "http://10.0.0.9:8080")
    backend = choose_backend()
    assert isinstance(backend, ExternalBackend) and backend.endpoint == "http://10.0.0.9:8080"


def test_tgi_is_launched_with_the_adapters_and_again_for_a_new_one(launcher, tiny_run, tiny_model_dir, tmp_path):
    backend = TGIBackend(log_dir=tmp_path / "logs", start_timeout_s=60)
    try:
        first = backend.target(RunDir(tiny_run))
        assert first.adapter is None and first.base == "tgi"
        (args,) = launches(launcher)
        assert args[args.index("--model-id") + 1] == str(tiny_model_dir)
        assert args[args.index("--hostname") + 1] == "127.0.0.1" and "--lora-adapters" not in args
        assert first.endpoint.endswith(args[args.index("--port") + 1])

        adapter = _give_adapter(tiny_run)
        second = backend.target(RunDir(tiny_run))
        assert second.adapter == RunDir(tiny_run).name
        args = launches(launcher)[-1]
        assert args[args.index("--lora-adapters") + 1] == f"{RunDir(tiny_run).name}={adapter}"
        backend.target(RunDir(tiny_run))
        assert len(launches(launcher)) == 2  # nothing new: no relaunch

        # The merged model, when a chat asks for it, is an instance of its own.
        merged = RunDir(tiny_run).merged_dir
        merged.mkdir()
        (merged / "config.json").write_text("{}")
        third = backend.target(RunDir(tiny_run), merged=True)
        args = launches(launcher)[-1]
        assert len(launches(launcher)) == 3 and args[args.index("--model-id") + 1] == str(merged)
        assert third.merged == "tgi" and third.endpoint_of("tgi") != third.endpoint  # its own server
        assert third.endpoint_of(third.adapter) == third.endpoint == second.endpoint  # the main one kept running
        procs = [backend._main.proc, backend._merged.proc]
    finally:
        backend.stop()
    assert all(p.poll() is not None for p in procs)  # both stopped with the app


def test_a_launch_that_fails_shows_the_log_tail(launcher, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("LAUNCHER_FAIL", "1")
    backend = TGIBackend(log_dir=tmp_path / "logs", start_timeout_s=60)
    with pytest.raises(BackendError, match="exited with code 3") as info:
        backend.target(RunDir(tiny_run))
    assert "CUDA not found" in str(info.value)
