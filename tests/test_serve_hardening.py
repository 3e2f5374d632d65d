"""The embedded server under a security probe: TGI's remaining routes (tokenize, chat_tokenize, metrics,
completions, invocations) and their bodies; requests that used to wedge it (long stops, huge bodies, abandoned
streams and timed-out clients); tampering with runtime adapter loading; lone surrogates and huge seeds; an open
server off loopback; and the HF token never sent to a chat endpoint."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from test_serve import check, events

SLOW_S = 0.1  # seconds per generated token in the slowed engine: 240 tokens would hold the model for 24 s


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    """A tiny engine that, while ``slow``, takes ``SLOW_S`` per forward pass and never emits EOS, so an
    uncancelled generation of 240 tokens would hold the model for 24 s."""
    from kinject.serving.engine import Engine

    engine = Engine(str(tiny_model_dir), max_concurrent_requests=4)
    forward = engine.model.forward

    def slow(*args, **kwargs):
        out = forward(*args, **kwargs)
        if getattr(engine, "slow", False):
            time.sleep(SLOW_S)
            out.logits[..., engine.tokenizer.eos_token_id] = float("-inf")  # never ends early by itself
        return out

    engine.model.forward = slow
    return engine


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    from kinject.serving.http import HttpPolicy, create_app
    from kinject.serving.server import ServerThread

    root = tmp_path_factory.mktemp("adapter-root")
    srv = ServerThread(create_app(engine, 8, HttpPolicy(adapter_root=root, max_body_bytes=100_000)))
    srv.root = root
    yield srv
    srv.stop()


@pytest.fixture
def slow(engine):
    engine.slow = True
    yield
    engine.slow = False


def post(server, path, body, **kw):
    return httpx.post(server.url + path, json=body, timeout=kw.pop("timeout", 60), **kw)


def wait_idle(engine, seconds: float) -> float:
    """Seconds until no request holds a queue slot (fails after ``seconds``)."""
    start = time.monotonic()
    while engine.in_flight and time.monotonic() - start < seconds:
        time.sleep(0.05)
    assert engine.in_flight == 0, f"the model was still busy after {seconds} s"
    return time.monotonic() - start


# ---------------------------------------------------------------------------------------- TGI's other routes


def test_tokenize_and_chat_tokenize_use_the_models_tokenizer(server, engine):
    text = "Amazon EC2 P5 uses H100 GPUs."
    tokens = post(server, "/tokenize", {"inputs": text}).json()
    check("TokenizeResponse", tokens)
    assert [t["id"] for t in tokens] == engine.tokenizer(text)["input_ids"]
    assert "".join(text[t["start"] : t["stop"]] for t in tokens) == text
    assert all(t["text"] == text[t["start"] : t["stop"]] for t in tokens)

    messages = [{"role": "user", "content": "Hi there"}]
    chat = post(server, "/chat_tokenize", {"messages": messages}).json()
    check("ChatTokenizeResponse", chat)
    assert chat["templated_text"] == engine.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    assert [t["id"] for t in chat["tokenize_response"]] == engine.tokenizer(chat["templated_text"])["input_ids"]


def test_completions_plain_streaming_and_several_prompts(server):
    body = {"prompt": "The P5 instance", "max_tokens": 5, "temperature": 0}
    plain = post(server, "/v1/completions", body).json()
    check("CompletionFinal", plain)
    assert plain["object"] == "text_completion" and plain["usage"]["completion_tokens"] <= 5
    chunks = events(post(server, "/v1/completions", {**body, "stream": True}))
    assert chunks[-1] == "[DONE]"
    for chunk in chunks[:-1]:
        check("Chunk", chunk)
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == plain["choices"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["choices"][0]["finish_reason"] == "" for c in chunks[:-2])

    two = post(server, "/v1/completions", {"prompt": ["The P5 instance", "Hello"], "max_tokens": 3}).json()
    assert [c["index"] for c in two["choices"]] == [0, 1] and two["choices"][0] == plain["choices"][0] | {
        "text": two["choices"][0]["text"]
    }
    too_many = post(server, "/v1/completions", {"prompt": ["a"] * 5})
    assert too_many.status_code == 422 and "batch size" in too_many.json()["error"]


def test_invocations_dispatch_as_tgi_does(server):
    generated = post(server, "/invocations", {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}).json()
    check("GenerateResponse", generated)
    chat = post(server, "/invocations", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}).json()
    check("ChatCompletion", chat)
    completion = post(server, "/invocations", {"prompt": ["Hi"], "max_tokens": 3}).json()
    check("CompletionFinal", completion)
    neither = post(server, "/invocations", {"hello": 1})
    assert neither.status_code == 422 and "`inputs`, `messages` or `prompt`" in neither.json()["error"]


def test_metrics_count_requests_tokens_and_failures(server):
    before = httpx.get(server.url + "/metrics")
    assert before.headers["content-type"].startswith("text/plain")
    post(server, "/generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 3}})
    post(server, "/generate", {"inputs": "", "parameters": {}})
    after = httpx.get(server.url + "/metrics").text

    def value(text: str, series: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series + " "))

    assert value(after, "tgi_request_count") == value(before.text, "tgi_request_count") + 2
    assert value(after, "tgi_request_success") == value(before.text, "tgi_request_success") + 1
    assert value(after, 'tgi_request_failure{err="validation"}') >= 1
    assert value(after, "tgi_request_generated_tokens_count") >= 1
    assert "# TYPE tgi_request_duration histogram" in after and 'tgi_request_duration_bucket{le="+Inf"}' in after


@pytest.mark.parametrize(
    ("path", "body", "status", "kind"),
    [
        ("/nothing-here", None, 404, "not_found"),
        ("/generate", b"{not json", 422, "validation"),
        ("/generate", b"\xff\xfe\x00", 422, "validation"),
        ("/v1/chat/completions", b"[]", 422, "validation"),
    ],
)
def test_framework_errors_are_tgis_error_body(server, path, body, status, kind):
    if body is None:
        response = httpx.get(server.url + path)
    else:
        response = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    check("ErrorResponse", response.json())
    assert response.json()["error_type"] == kind
    wrong_method = httpx.get(server.url + "/generate")
    assert wrong_method.status_code == 405 and wrong_method.json()["error_type"] == "method_not_allowed"


# ------------------------------------------------------------------------------- requests that wedged it


def test_a_long_stop_is_refused_and_a_stop_still_stops(server):
    started = time.monotonic()
    long_stop = post(server, "/generate", {"inputs": "Hi", "parameters": {"stop": ["x" * 1_000_000]}})
    assert long_stop.status_code == 413  # over this server's 100 kB body limit, refused unread
    long_stop = post(server, "/generate", {"inputs": "Hi", "parameters": {"stop": ["x" * 300] * 4}})
    assert long_stop.status_code == 422 and "at most 256 characters" in long_stop.json()["error"]
    chat = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "stop": "y" * 300})
    assert chat.status_code == 422
    allowed = post(server, "/generate", {"inputs": "Hi", "parameters": {"stop": ["z" * 256] * 4, "max_new_tokens": 8}})
    assert allowed.status_code == 200
    assert time.monotonic() - started < 30  # one 10 kB stop used to take 22 s

    free = post(server, "/generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 8, "details": True}}).json()
    second = free["details"]["tokens"][1]["text"]  # stop at the second token's text
    stopped = post(
        server, "/generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 8, "details": True, "stop": [second]}}
    ).json()
    assert stopped["details"]["finish_reason"] == "stop_sequence"
    assert stopped["generated_text"].endswith(second) and len(stopped["details"]["tokens"]) <= 2


def test_a_huge_body_is_refused_before_it_is_read(server):
    huge = b'{"inputs": "' + b"a" * 5_000_000 + b'"}'
    started = time.monotonic()
    response = httpx.post(server.url + "/generate", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error_type"] == "validation"
    assert "larger than 100000 bytes" in response.json()["error"]

    def chunks():  # no content-length: the limit holds for a chunked body too
        for _ in range(50):
            yield b"a" * 10_000

    chunked = httpx.post(server.url + "/generate", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert time.monotonic() - started < 10  # a 20 MB body used to be tokenized for 24 s


def test_an_abandoned_stream_stops_generating(server, engine, slow):
    body = {"inputs": "Hi", "parameters": {"max_new_tokens": 240}}
    with httpx.stream("POST", server.url + "/generate_stream", json=body, timeout=60) as response:
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith("data:")
            if seen == 2:
                break  # the client leaves after two events
    wait_idle(engine, 8)  # generating to the end would hold the model for 24 s
    again = post(server, "/generate", {"inputs": "Hi", "parameters": {"max_new_tokens": 2}})
    assert again.status_code == 200
    assert "tgi_request_cancelled 1" in httpx.get(server.url + "/metrics").text


def test_a_client_that_times_out_frees_the_model(server, engine, slow):
    body = {"inputs": "Hi", "parameters": {"max_new_tokens": 240}}
    with pytest.raises(httpx.ReadTimeout):
        post(server, "/generate", body, timeout=1.0)
    assert engine.in_flight == 1  # still generating when the client gave up
    wait_idle(engine, 8)
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 200}  # the template's tokens leave 200
    with pytest.raises(httpx.ReadTimeout):
        post(server, "/v1/chat/completions", chat, timeout=1.0)
    assert engine.in_flight == 1
    wait_idle(engine, 8)


# ------------------------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/generate", '{"inputs": "hello \\ud800 there"}'),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud800"}]}'),
        ("/generate", '{"inputs": "hi", "parameters": {"stop": ["\\udfff"]}}'),
        ("/tokenize", '{"inputs": "\\ud83d"}'),
    ],
)
def test_a_lone_surrogate_is_a_validation_error(server, path, raw):
    response = httpx.post(server.url + path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "lone surrogate" in response.json()["error"]


def test_a_seed_beyond_64_bits_is_a_validation_error(server):
    for path, body in (
        ("/generate", {"inputs": "Hi", "parameters": {"seed": 2**80, "do_sample": True}}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "seed": 2**80}),
    ):
        response = post(server, path, body)
        assert response.status_code == 422 and "seed" in response.json()["error"]
    ok = post(server, "/generate", {"inputs": "Hi", "parameters": {"seed": 2**64 - 1, "do_sample": True}})
    assert ok.status_code == 200


# --------------------------------------------------------------------------------------- adapter loading


def _fake_adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return folder


def test_runtime_loading_reads_only_under_the_adapter_root(server, tmp_path):
    outside = _fake_adapter(tmp_path / "elsewhere")
    response = post(server, "/kinject/adapters", {"name": "x", "path": str(outside)})
    assert response.status_code == 403 and "outside the folder" in response.json()["error"]
    escape = server.root / "link"
    escape.symlink_to(outside)
    response = post(server, "/kinject/adapters", {"name": "x", "path": str(escape)})
    assert response.status_code == 403
    dotted = post(server, "/kinject/adapters", {"name": "x", "path": str(server.root / ".." / outside.name)})
    assert dotted.status_code == 403
    damaged = _fake_adapter(server.root / "damaged")
    (damaged / "adapter_model.safetensors").write_bytes(b"")
    response = post(server, "/kinject/adapters", {"name": "x", "path": str(damaged)})
    assert response.status_code == 422 and "could not be loaded" in response.json()["error"]
    assert httpx.get(server.url + "/v1/models").json()["data"][-1]["id"] != "x"


@pytest.mark.parametrize("name", ["..", "../x", "a/../b", "", "x" * 300, "a b", "/abs"])
def test_a_bad_adapter_name_is_a_validation_error(server, name):
    response = post(server, "/kinject/adapters", {"name": name, "path": "anything"})
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "validation"


def test_no_adapter_root_means_no_local_loading(engine, tmp_path):
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    srv = ServerThread(create_app(engine))
    try:
        response = post(srv, "/kinject/adapters", {"name": "x", "path": str(_fake_adapter(tmp_path / "a"))})
        assert response.status_code == 403 and "--adapter-root" in response.json()["error"]
    finally:
        srv.stop()


def test_an_api_key_guards_every_route_but_health(engine):
    from kinject.serving.http import HttpPolicy, create_app
    from kinject.serving.server import ServerThread

    key = "k" * 24
    srv = ServerThread(create_app(engine, 4, HttpPolicy(api_key=key)))
    try:
        assert httpx.get(srv.url + "/health").status_code == 200
        for path in ("/info", "/metrics", "/v1/models"):
            refused = httpx.get(srv.url + path)
            assert refused.status_code == 401 and refused.json()["error_type"] == "authentication"
        wrong = post(srv, "/generate", {"inputs": "Hi"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = post(srv, "/generate", {"inputs": "Hi"}, headers={"Authorization": f"Bearer {key}"})
        assert right.status_code == 200, right.text
    finally:
        srv.stop()


def test_serve_off_loopback_needs_a_key_before_loading_anything(monkeypatch, capsys):
    import kinject.serve
    from kinject.cli import main

    monkeypatch.setattr(kinject.serve, "Engine", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.delenv("KINJECT_API_KEY", raising=False)
    monkeypatch.delenv("KINJECT_ALLOW_NO_AUTH", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 1
    assert "without an API key" in capsys.readouterr().err
    monkeypatch.setenv("KINJECT_API_KEY", "short")
    assert main(["serve", "--host", "127.0.0.1"]) == 1
    assert "at least 16 characters" in capsys.readouterr().err


def _chat_recorder(seen: list[tuple[str, dict]], content: str) -> ThreadingHTTPServer:
    """A loopback chat-completions server that answers ``content`` and records each request's authorization
    header and body in ``seen``."""

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):
            sent = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            seen.append((self.headers.get("authorization", ""), sent))
            message = {"role": "assistant", "content": content}
            body = json.dumps(
                {
                    "object": "chat.completion",
                    "id": "x",
                    "created": 0,
                    "model": "m",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_the_chat_client_never_sends_the_hf_token(monkeypatch):
    from kinject.serving.client import chat_messages

    seen: list[tuple[str, dict]] = []
    httpd = _chat_recorder(seen, "ok")
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    secret = "hf_operatorSecretToken0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.delenv("KINJECT_API_KEY", raising=False)
    try:
        assert "".join(chat_messages(url, None, [{"role": "user", "content": "hi"}], stream=False)) == "ok"
        monkeypatch.setenv("KINJECT_API_KEY", "the-servers-own-key-1234")
        assert "".join(chat_messages(url, None, [{"role": "user", "content": "hi"}], stream=False)) == "ok"
    finally:
        httpd.shutdown()
    assert seen and all(secret not in header for header, _ in seen)
    assert seen[-1][0] == "Bearer the-servers-own-key-1234"


def test_one_reply_sends_its_seed_and_the_servers_key_only(monkeypatch):
    """``ServerClient.reply`` (what a generator server is asked): one answer, the request's seed and temperature,
    no top_p, and ``$KINJECT_API_KEY`` rather than the HF token."""
    from kinject.serving.client import ServerClient

    seen: list[tuple[str, dict]] = []
    httpd = _chat_recorder(seen, " ok ")
    monkeypatch.setenv("HF_TOKEN", "hf_operatorSecretToken0123456789abcdef")
    monkeypatch.setenv("KINJECT_API_KEY", "the-servers-own-key-1234")
    try:
        client = ServerClient(f"http://127.0.0.1:{httpd.server_address[1]}", timeout_s=30)
        answer = client.reply([{"role": "user", "content": "hi"}], "gen", max_tokens=8, temperature=-1, seed=7)
    finally:
        httpd.shutdown()
    assert answer == " ok "
    (header, sent), *_ = seen
    assert header == "Bearer the-servers-own-key-1234"
    assert sent["seed"] == 7 and sent["temperature"] == 0.0 and sent["max_tokens"] == 8 and sent["model"] == "gen"
    assert "top_p" not in sent
