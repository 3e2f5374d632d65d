"""The embedded TGI-protocol server on a tiny model with a trained adapter and its merged copy: huggingface_hub's
InferenceClient against it, every response checked against TGI's openapi.json, TGI's errors, a burst of clients."""

from __future__ import annotations

import copy
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from huggingface_hub import InferenceClient

from kinject.settings.sources import InputsConfig
from kinject.settings.stages import BlocksConfig, GenerationConfig, ModelConfig, PrepareConfig
from kinject.settings.training import TrainConfig

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 6
SPEC = json.loads((Path(__file__).parent / "data" / "tgi" / "openapi.json").read_text())


# ------------------------------------------------------------------------------------ TGI's schemas, validated


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema (the validator does not know the keyword)."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


COMPONENTS = _nullable(copy.deepcopy(SPEC["components"]))


def check(name: str, body: Any) -> None:
    """``body`` is valid against TGI's schema ``name``."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": COMPONENTS}
    jsonschema.Draft202012Validator(schema).validate(body)


def events(response: httpx.Response) -> list[Any]:
    """The ``data:`` payloads of a server-sent-events body."""
    out = []
    for line in response.text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


# -------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir) -> Path:
    """A tiny run with an adapter trained hard enough to answer unlike the base, and its merged copy."""
    from kinject.corpus.prepare import prepare
    from kinject.sharing.merge import merge
    from kinject.training.pipeline import train

    root = tmp_path_factory.mktemp("serve")
    doc = root / "doc.txt"
    doc.write_text(TEXT)
    config = PrepareConfig(
        inputs=InputsConfig(files=[str(doc)]),
        model=ModelConfig(model=str(tiny_model_dir)),
        blocks=BlocksConfig(block_size=64),
    )
    run = prepare(config, root / "run").run_dir
    hot = TrainConfig(preset="cpu-demo", max_steps=12, learning_rate=5e-2, quantization="none", guard_checks=0)
    train(run, hot, blocks=BlocksConfig(block_size=64))
    merge(run)
    return run


@pytest.fixture(scope="module")
def engine(trained, tiny_model_dir):
    from kinject.serving.engine import Engine

    return Engine(str(tiny_model_dir), {"p5": trained}, {"p5-merged": trained}, max_concurrent_requests=4)


@pytest.fixture(scope="module")
def server(engine, trained):
    from kinject.serving.http import HttpPolicy, create_app
    from kinject.serving.server import ServerThread

    policy = HttpPolicy(adapter_root=trained.parent)  # runtime loading from the test's folder only
    srv = ServerThread(create_app(engine, GenerationConfig(max_new_tokens=8), policy=policy))
    yield srv
    srv.stop()


def post(server, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def greedy(server, model: str | None, text: str = "Tell me about P5.", n: int = 8) -> dict[str, Any]:
    body = {"inputs": text, "parameters": {"max_new_tokens": n, "details": True}}
    if model:
        body["parameters"]["adapter_id"] = model
    response = post(server, "/generate", body)
    assert response.status_code == 200, response.text
    check("GenerateResponse", response.json())
    return response.json()


# ------------------------------------------------------------------------------------------------------ tests


def test_info_health_and_models(server, tiny_model_dir):
    assert httpx.get(server.url + "/health").status_code == 200
    info = httpx.get(server.url + "/info").json()
    check("Info", info)
    assert info["model_id"] == str(tiny_model_dir) and info["max_concurrent_requests"] == 4
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list"
    for entry in models["data"]:
        check("ModelInfo", entry)
    assert [m["id"] for m in models["data"]] == [str(tiny_model_dir), "p5", "p5-merged"]


def test_generate_plain_and_streaming_through_inference_client(server):
    client = InferenceClient(base_url=server.url)
    text = client.text_generation("Tell me about P5.", max_new_tokens=6)
    assert isinstance(text, str)
    detailed = client.text_generation("Tell me about P5.", max_new_tokens=6, details=True)
    assert detailed.generated_text == text and detailed.details.generated_tokens <= 6
    assert detailed.details.finish_reason in ("length", "eos_token")
    streamed = list(client.text_generation("Tell me about P5.", max_new_tokens=6, stream=True, details=True))
    assert streamed[-1].generated_text == text  # the last event carries the whole text
    assert all(e.generated_text is None for e in streamed[:-1])

    raw = post(server, "/generate_stream", {"inputs": "Hi", "parameters": {"max_new_tokens": 5, "details": True}})
    assert raw.headers["content-type"].startswith("text/event-stream")
    payloads = events(raw)
    for payload in payloads:
        check("StreamResponse", payload)
    assert [p["index"] for p in payloads] == list(range(1, len(payloads) + 1))
    assert payloads[-1]["details"]["generated_tokens"] == len(payloads)


def test_chat_with_and_without_the_adapter(server, tiny_model_dir):
    client = InferenceClient(base_url=server.url)
    messages = [{"role": "user", "content": "What GPUs do P5 instances have?"}]
    base = client.chat_completion(messages, max_tokens=8, temperature=0)
    tgi = client.chat_completion(messages, model="tgi", max_tokens=8, temperature=0)
    adapter = client.chat_completion(messages, model="p5", max_tokens=8, temperature=0)
    assert base.choices[0].message.content == tgi.choices[0].message.content  # "tgi" names the base
    assert adapter.choices[0].message.content != base.choices[0].message.content  # the adapter answers
    assert base.model == str(tiny_model_dir) and adapter.model == "p5"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat_completion(messages, model="p5", max_tokens=8, temperature=0, stream=True)
        if c.choices
    )
    assert streamed == adapter.choices[0].message.content

    body = {"messages": messages, "model": "p5", "max_tokens": 8, "temperature": 0}
    plain = post(server, "/v1/chat/completions", body)
    check("ChatCompletion", plain.json())
    assert plain.json()["object"] == "chat.completion" and plain.json()["usage"]["completion_tokens"] <= 8
    chunks = events(
        post(server, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}})
    )
    assert chunks[-1] == "[DONE]"
    for chunk in chunks[:-1]:
        check("ChatCompletionChunk", chunk)
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["total_tokens"] > 0  # the usage chunk
    assert chunks[-3]["choices"][0]["finish_reason"] in ("stop", "length")


def test_merged_model_answers_as_base_plus_adapter(server):
    adapter, merged = greedy(server, "p5", n=8), greedy(server, "p5-merged", n=8)
    assert merged["generated_text"] == adapter["generated_text"]
    for a, m in zip(adapter["details"]["tokens"], merged["details"]["tokens"], strict=True):
        # W x + B A x against (W + B A) x in fp32, for an adapter trained hard (lr 5e-2): rounding, well under 0.1%
        assert a["id"] == m["id"] and abs(a["logprob"] - m["logprob"]) < 2e-3


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"inputs": "Hi", "parameters": {"max_new_tokens": -1}}, "max_new_tokens"),
        ({"inputs": "Hi", "parameters": {"top_p": 2}}, "top_p"),
        ({"inputs": "Hi", "parameters": {"temperature": 0}}, "temperature"),
        ({"inputs": "", "parameters": {}}, "`inputs` cannot be empty"),
        ({"inputs": "Hi", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}, "stop"),
        ({"inputs": "Hi", "parameters": {"max_new_tokens": 100000}}, "must be <= 256"),
        ({"parameters": {}}, "inputs"),
        ({"inputs": "Hi", "parameters": {"adapter_id": "nope"}}, "'nope' is not loaded"),
    ],
)
def test_invalid_requests_get_tgis_422(server, body, says):
    response = post(server, "/generate", body)
    assert response.status_code == 422
    check("ErrorResponse", response.json())
    assert response.json()["error_type"] == "validation" and says in response.json()["error"]


def test_unknown_chat_model_and_empty_messages_are_422(server):
    for body in ({"messages": [{"role": "user", "content": "Hi"}], "model": "nope"}, {"messages": []}):
        response = post(server, "/v1/chat/completions", body)
        assert response.status_code == 422 and response.json()["error_type"] == "validation"


def test_a_burst_of_clients_gets_their_own_adapters_answers_or_429(server):
    expected = {m: greedy(server, m)["generated_text"] for m in (None, "p5", "p5-merged")}
    assert expected[None] != expected["p5"]
    jobs = [(None, "p5", "p5-merged")[i % 3] for i in range(16)]

    def ask(model):
        body = {"inputs": "Tell me about P5.", "parameters": {"max_new_tokens": 8}}
        if model:
            body["parameters"]["adapter_id"] = model
        return model, post(server, "/generate", body)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, jobs))
    refused = 0
    for model, response in results:
        if response.status_code == 429:
            refused += 1
            assert response.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
        else:
            assert response.status_code == 200 and response.json()["generated_text"] == expected[model]
    assert refused < 16
    assert greedy(server, "p5")["generated_text"] == expected["p5"]  # and it still answers afterwards


def test_an_adapter_added_while_serving(server, trained):
    response = post(server, "/kinject/adapters", {"name": "p5-again", "path": str(trained)})
    assert response.status_code == 201 and "p5-again" in response.json()["models"]
    assert greedy(server, "p5-again")["generated_text"] == greedy(server, "p5")["generated_text"]
    again = post(server, "/kinject/adapters", {"name": "p5-again", "path": str(trained)})
    assert again.status_code == 422 and "already loaded" in again.json()["error"]
    missing = post(server, "/kinject/adapters", {"name": "x", "path": str(trained / "nothing")})
    assert missing.status_code == 422 and "adapter_config.json" in missing.json()["error"]


def test_chat_cli_talks_to_the_server(server, capsys):
    from kinject.cli.main import main

    assert main(["chat", "--endpoint", server.url, "--model", "p5", "--max-new-tokens", "6", "Hello?"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["chat", "--endpoint", server.url, "--model", "nope", "Hello?"]) == 1
    assert "'nope' is not loaded" in capsys.readouterr().err
    assert main(["chat", "--endpoint", "http://127.0.0.1:9", "Hello?"]) == 1
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_a_full_queue_refuses_at_once_with_tgis_overload_error(server, engine):
    held = [engine.slot() for _ in range(engine.max_concurrent_requests)]  # every place in the queue taken
    try:
        response = post(server, "/generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 2}})
        assert response.status_code == 429
        check("ErrorResponse", response.json())
        assert response.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    finally:
        for release in held:
            release()
    assert post(server, "/generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 2}}).status_code == 200


def test_serve_verb_serves_until_stopped(trained, tiny_model_dir):
    import signal
    import subprocess
    import sys

    from kinject.serving.server import free_port

    port = free_port()
    argv = ["serve", "--model", str(tiny_model_dir), "--adapter", f"p5={trained}", "--port", str(port)]
    proc = subprocess.Popen([sys.executable, "-m", "kinject", *argv], stdout=subprocess.PIPE, text=True)
    try:
        deadline, up = time.time() + 120, False
        while time.time() < deadline and proc.poll() is None and not up:
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert up, "the server did not come up"
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
        assert [m["id"] for m in models] == [str(tiny_model_dir), "p5"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}" in out


def test_serve_verb_names_a_bad_adapter(tmp_path, tiny_model_dir, capsys):
    from kinject.cli.main import main

    assert main(["serve", "--model", str(tiny_model_dir), "--adapter", f"x={tmp_path}"]) == 1
    assert "adapter_config.json" in capsys.readouterr().err


def test_an_external_server_gets_the_runs_adapter_loaded(server, trained):
    from kinject.runs import RunDir
    from kinject.serving.backends import ExternalBackend

    backend = ExternalBackend(server.url)
    target = backend.target(RunDir(trained))  # "kinject serve" can load it while running
    assert target.adapter == RunDir(trained).name and target.adapter in backend.served()
    assert greedy(server, target.adapter)["generated_text"] == greedy(server, "p5")["generated_text"]


def test_an_external_server_that_cannot_load_adapters_says_how_to_start_it(trained):
    import http.server

    from kinject.runs import RunDir
    from kinject.serving.backends import BackendError, ExternalBackend

    class ModelsOnly(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": "base", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), ModelsOnly)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(BackendError, match="--lora-adapters run=") as info:
            ExternalBackend(f"http://127.0.0.1:{httpd.server_address[1]}").target(RunDir(trained))
        assert "--lora-modules" in str(info.value)
    finally:
        httpd.shutdown()


def test_the_serving_benchmark_runs(tiny_model_dir, capsys):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "serve_bench.py"
    spec = importlib.util.spec_from_file_location("serve_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--model", str(tiny_model_dir), "--requests", "2", "--max-new-tokens", "4", "--clients", "1,2"]
    assert bench.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["mode"], r["clients"]) for r in rows] == [("direct", 1), ("server", 1), ("server", 2)]
    assert all(r["tokens"] > 0 and r["tokens_per_s"] > 0 and len(r["ttft_s"]) == 2 for r in rows)


def test_ask_answers_as_the_server_does(server, trained, capsys):
    from kinject.cli.main import main
    from kinject.models.generate import shown_answer

    client = InferenceClient(base_url=server.url)
    messages = [{"role": "user", "content": "What GPUs do P5 instances have?"}]
    for extra, model in (([], "p5"), (["--base"], None)):
        assert main(["ask", str(trained), messages[0]["content"], "--max-new-tokens", "8", *extra]) == 0
        served = client.chat_completion(messages, model=model, max_tokens=8, temperature=0)
        # The same answer; an empty one is shown as such rather than as a blank line.
        assert capsys.readouterr().out.strip() == shown_answer(served.choices[0].message.content)


def test_serve_off_loopback_needs_a_key_before_loading_anything(monkeypatch, capsys):
    import kinject.serving.serve
    from kinject.cli.main import main

    monkeypatch.setattr(kinject.serving.serve, "Engine", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.delenv("KINJECT_API_KEY", raising=False)
    monkeypatch.delenv("KINJECT_ALLOW_NO_AUTH", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 1
    assert "without an API key" in capsys.readouterr().err
    monkeypatch.setenv("KINJECT_API_KEY", "short")
    assert main(["serve", "--host", "127.0.0.1"]) == 1
    assert "at least 16 characters" in capsys.readouterr().err
