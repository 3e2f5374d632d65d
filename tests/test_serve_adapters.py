"""Where ``POST /kinject/adapters`` reads an adapter from (``kinject.serving.adapters``): a relative path lies under
the server's ``--adapter-root``, whatever its working folder, and still cannot climb out of it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from test_serve_engine import lora_adapter

from kinject.settings.stages import GenerationConfig


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir):
    """An adapter root holding ``p5`` and ``team/p5`` (a path with the form of a Hub id), beside ``outside``."""
    top = tmp_path_factory.mktemp("served")
    lora_adapter(top / "root" / "p5", tiny_model_dir, zero=False)
    lora_adapter(top / "root" / "team" / "p5", tiny_model_dir, zero=False)
    (top / "outside").mkdir()
    (top / "outside" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return top / "root"


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from kinject.serving.engine import Engine

    return Engine(str(tiny_model_dir))


@pytest.fixture(scope="module")
def server(engine, root):
    from kinject.serving.http import HttpPolicy, create_app
    from kinject.serving.server import ServerThread

    # No Hub downloads: a path read as a Hub id would be refused with 403, never fetched.
    srv = ServerThread(
        create_app(
            engine,
            GenerationConfig(max_new_tokens=4),
            HttpPolicy(adapter_root=root, hub_adapters=False),
        )
    )
    yield srv
    srv.stop()


def add(server, name: str, path: str) -> httpx.Response:
    return httpx.post(server.url + "/kinject/adapters", json={"name": name, "path": path}, timeout=60)


@pytest.mark.parametrize(("name", "path"), [("p5", "p5"), ("team-p5", "team/p5"), ("dotted", "./team/../p5")])
def test_a_relative_path_is_read_under_the_adapter_root(server, root, name, path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the server's working folder holds nothing of that name
    response = add(server, name, path)
    assert response.status_code == 201, response.text
    assert name in response.json()["models"]
    body = {"inputs": "P5 instances have", "parameters": {"adapter_id": name, "max_new_tokens": 2}}
    assert httpx.post(server.url + "/generate", json=body, timeout=60).status_code == 200


@pytest.mark.parametrize("path", ["../outside", "p5/../../outside", "team/../../outside"])
def test_a_relative_path_cannot_climb_out_of_the_adapter_root(server, root, path, monkeypatch):
    monkeypatch.chdir(root.parent)  # where ``outside`` is a folder of its own
    response = add(server, "escaped", path)
    assert response.status_code == 403, response.text
    assert "outside the folder this server loads adapters from" in response.json()["error"]


def test_a_relative_path_that_is_not_there_says_so(server, root, monkeypatch):
    monkeypatch.chdir(root.parent)
    response = add(server, "missing", "outside-not")
    assert response.status_code == 422 and "adapter_config.json" in response.json()["error"]
    hub_form = add(server, "hub", "owner/name")  # no folder of that name under the root: a Hub id, not downloaded
    assert hub_form.status_code == 403 and "Hub adapters" in hub_form.json()["error"]


def _fake_adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return folder


def test_runtime_loading_reads_only_under_the_adapter_root(server, root, tmp_path):
    outside = _fake_adapter(tmp_path / "elsewhere")
    response = add(server, "x", str(outside))
    assert response.status_code == 403 and "outside the folder" in response.json()["error"]
    escape = root / "link"
    escape.symlink_to(outside)
    response = add(server, "x", str(escape))
    assert response.status_code == 403
    dotted = add(server, "x", str(root / ".." / outside.name))
    assert dotted.status_code == 403
    damaged = _fake_adapter(root / "damaged")
    (damaged / "adapter_model.safetensors").write_bytes(b"")
    response = add(server, "x", str(damaged))
    assert response.status_code == 422 and "could not be loaded" in response.json()["error"]
    assert httpx.get(server.url + "/v1/models").json()["data"][-1]["id"] != "x"


@pytest.mark.parametrize("name", ["..", "../x", "a/../b", "", "x" * 300, "a b", "/abs"])
def test_a_bad_adapter_name_is_a_validation_error(server, name):
    response = add(server, name, "anything")
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "validation"


def test_no_adapter_root_means_no_local_loading(engine, tmp_path):
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    srv = ServerThread(create_app(engine))
    try:
        response = add(srv, "x", str(_fake_adapter(tmp_path / "a")))
        assert response.status_code == 403 and "--adapter-root" in response.json()["error"]
    finally:
        srv.stop()
