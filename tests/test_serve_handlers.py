"""Requests as engine calls (``kinject.serving.handlers``) on a tiny model with the bundled model's 8192-token
context: input the model cannot read is refused by its size before it is tokenized or templated, ``/tokenize``'s
answer is bounded, and parsing, tokenizing and templating run off the event loop, so ``/health`` answers while a
large request is worked on."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from model_fixtures import build_tiny_llama
from test_serve import check

from kinject.settings.stages import GenerationConfig

CONTEXT = 8192  # the bundled SmolLM2's: 8191 input tokens of at most 81 characters each
HI = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory, bundled_tokenizer):
    from kinject.serving.engine import Engine

    return Engine(str(build_tiny_llama(tmp_path_factory.mktemp("long"), bundled_tokenizer, context=CONTEXT)))


@pytest.fixture(scope="module")
def server(engine):
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    srv = ServerThread(create_app(engine, GenerationConfig(max_new_tokens=4)))  # the default policy: bodies up to 2 MB
    yield srv
    srv.stop()


def post(server, path: str, body: Any, timeout: float = 60) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=timeout)


def test_the_input_limits_follow_the_models_context(engine):
    assert engine.max_input_tokens == CONTEXT - 1
    assert engine.max_input_chars(None) == (CONTEXT - 1) * 81  # the bundled tokenizer's longest token: 81 '#'


TOO_LONG = "a" * ((CONTEXT - 1) * 81 + 1)  # one character more than 8191 tokens can hold: 1.3 MB


CHARS = "`inputs` has 663472 characters: at most 663471 fit"


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        pytest.param("/tokenize", {"inputs": TOO_LONG}, CHARS, id="tokenize-chars"),
        pytest.param("/generate", {"inputs": TOO_LONG}, CHARS, id="generate-chars"),
        pytest.param("/v1/completions", {"prompt": TOO_LONG}, CHARS, id="completions-chars"),
        pytest.param(
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": TOO_LONG}]},
            "`messages` has 663476 characters: at most 663471 fit",  # the role's 4 characters too
            id="chat-chars",
        ),
        pytest.param(
            "/v1/chat/completions",
            {"messages": [HI] * CONTEXT},
            "`messages` holds 8192 messages: at most 8191 fit",
            id="chat-messages",
        ),
        pytest.param(
            "/chat_tokenize",
            {"messages": [HI] * CONTEXT},
            "`messages` holds 8192 messages: at most 8191 fit",
            id="chat_tokenize-messages",
        ),
        pytest.param(
            "/tokenize",
            {"inputs": " x" * 40_000},
            "`inputs` is 40000 tokens: /tokenize lists at most 32768",
            id="tokenize-answer",
        ),
    ],
)
def test_input_the_model_cannot_read_is_refused_by_its_size(server, path, body, says):
    started = time.monotonic()
    response = post(server, path, body)
    assert response.status_code == 422, response.text[:300]
    check("ErrorResponse", response.json())
    assert response.json()["error_type"] == "validation" and says in response.json()["error"]
    assert time.monotonic() - started < 5  # 1.9 MB of text tokenized whole makes a 50 MB answer in 10.6 s


class HeldTokenizer:
    """The engine's tokenizer, holding every tokenizing and chat template until ``release`` is set: a large request
    that takes as long as the test needs. ``entered`` is set once one is held."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self.entered, self.release = threading.Event(), threading.Event()

    def _hold(self) -> None:
        self.entered.set()
        assert self.release.wait(60), "the test never released the tokenizer"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._hold()
        return self._tokenizer(*args, **kwargs)

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        self._hold()
        return self._tokenizer.apply_chat_template(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/tokenize", {"inputs": " x" * 30_000}, id="tokenize"),  # 30,000 tokens: allowed
        pytest.param("/chat_tokenize", {"messages": [HI] * 2_000}, id="chat_tokenize"),
        pytest.param("/generate", {"inputs": " x" * 4_000, "parameters": {"max_new_tokens": 2}}, id="generate"),
        pytest.param("/v1/completions", {"prompt": " x" * 4_000, "max_tokens": 2}, id="completions"),
        pytest.param("/v1/chat/completions", {"messages": [HI] * 1_000, "max_tokens": 2}, id="chat"),
        pytest.param("/invocations", {"messages": [HI] * 1_000, "max_tokens": 2}, id="invocations"),
    ],
)
def test_health_answers_while_a_large_request_is_tokenized(server, engine, monkeypatch, path, body):
    held = HeldTokenizer(engine.tokenizer)
    monkeypatch.setattr(engine, "tokenizer", held)
    answers: list[httpx.Response] = []
    request = threading.Thread(target=lambda: answers.append(post(server, path, body)))
    request.start()
    try:
        assert held.entered.wait(30), "the request was never tokenized"
        started = time.monotonic()
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
    finally:
        held.release.set()
        request.join(60)
    assert answers and answers[0].status_code == 200, answers[0].text[:300] if answers else "no answer"
    if path == "/tokenize":
        assert len(answers[0].json()) == 30_000
