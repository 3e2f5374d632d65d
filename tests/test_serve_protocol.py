"""OpenAI fields on the chat and completions routes (``kinject.serving.protocol``): what the server cannot do is
refused with a 422 naming the fields, never answered as if it were done; the chosen tokens' ``logprobs`` are
returned, plain and streamed."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from test_serve import check, events

from kinject.settings.stages import GenerationConfig

HI = [{"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    from kinject.serving.engine import Engine
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    srv = ServerThread(create_app(Engine(str(tiny_model_dir)), GenerationConfig(max_new_tokens=4)))
    yield srv
    srv.stop()


def post(server, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


@pytest.mark.parametrize(
    ("path", "fields", "named"),
    [
        pytest.param("/v1/chat/completions", {"n": 5}, ["`n` = 5"], id="chat-n"),
        pytest.param(
            "/v1/chat/completions",
            {"logprobs": True, "top_logprobs": 2},
            ["`top_logprobs` = 2"],
            id="chat-top_logprobs",
        ),
        pytest.param(
            "/v1/chat/completions", {"tools": [TOOL], "tool_choice": "required"}, ["`tools`"], id="chat-tools-required"
        ),
        pytest.param("/v1/chat/completions", {"tools": [TOOL]}, ["`tools`"], id="chat-tools"),
        pytest.param(
            "/v1/chat/completions",
            {"tool_choice": {"function": {"name": "weather"}}},
            ["`tool_choice`"],
            id="chat-tool_choice",
        ),
        pytest.param(
            "/v1/chat/completions",
            {"response_format": {"type": "json", "value": {}}},
            ["`response_format`"],
            id="chat-response_format",
        ),
        pytest.param(
            "/v1/chat/completions",
            {"frequency_penalty": 0.5},
            ["`frequency_penalty` = 0.5"],
            id="chat-frequency_penalty",
        ),
        pytest.param("/v1/chat/completions", {"logit_bias": {"42": 5}}, ["`logit_bias`"], id="chat-logit_bias"),
        pytest.param(
            "/v1/chat/completions",
            {"n": 2, "top_logprobs": 1, "stream": True},
            ["`n` = 2", "`top_logprobs` = 1"],
            id="chat-n-stream",
        ),
        pytest.param("/v1/completions", {"n": 1000}, ["`n` = 1000"], id="completions-n"),
        pytest.param("/v1/completions", {"best_of": 1000}, ["`best_of` = 1000"], id="completions-best_of"),
        pytest.param("/v1/completions", {"logprobs": 3}, ["`logprobs` = 3"], id="completions-logprobs"),
        pytest.param("/v1/completions", {"echo": True}, ["`echo`"], id="completions-echo"),
        pytest.param(
            "/v1/completions",
            {"n": 3, "best_of": 4, "stream": True},
            ["`n` = 3", "`best_of` = 4"],
            id="completions-n-stream",
        ),
    ],
)
def test_an_unsupported_openai_field_is_a_422_naming_it(server, path, fields, named):
    prompt = {"messages": HI} if path == "/v1/chat/completions" else {"prompt": "Hi"}
    response = post(server, path, {**prompt, "max_tokens": 2, **fields})
    assert response.status_code == 422, response.text[:300]
    check("ErrorResponse", response.json())
    error = response.json()["error"]
    assert response.json()["error_type"] == "validation" and "not supported by kinject's server" in error
    assert all(name in error for name in named), error


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v1/chat/completions", {"n": 1, "logprobs": False, "top_logprobs": 0, "frequency_penalty": 0}),
        ("/v1/chat/completions", {"logprobs": None, "tools": [TOOL], "tool_choice": "none", "logit_bias": {}}),
        ("/v1/chat/completions", {"tool_choice": "auto", "response_format": None}),
        ("/v1/completions", {"n": 1, "best_of": 1, "logprobs": None, "echo": False}),
    ],
)
def test_the_neutral_values_of_those_fields_are_answered(server, path, fields):
    prompt = {"messages": HI} if path == "/v1/chat/completions" else {"prompt": "Hi"}
    response = post(server, path, {**prompt, "max_tokens": 2, **fields})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["choices"][0]["logprobs"] is None


def test_logprobs_are_the_chosen_tokens_plain_and_streamed(server):
    body = {"messages": HI, "max_tokens": 6, "logprobs": True}
    plain = post(server, "/v1/chat/completions", body).json()
    check("ChatCompletion", plain)
    content = plain["choices"][0]["logprobs"]["content"]
    assert content and "".join(t["token"] for t in content) == plain["choices"][0]["message"]["content"]
    assert all(t["logprob"] <= 0 and math.isfinite(t["logprob"]) and t["top_logprobs"] == [] for t in content)

    chunks = events(post(server, "/v1/chat/completions", {**body, "stream": True}))[:-1]
    for chunk in chunks:
        check("ChatCompletionChunk", chunk)
    streamed = [t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["content"]]
    assert streamed == content  # greedy: the same tokens, one chunk each


def test_what_a_request_leaves_unset_is_the_servers_decoding():
    """``kinject serve --temperature --top-p --repetition-penalty`` are the defaults of a request that sets none;
    a request's own value wins, and the server's greedy default (temperature at or below 0.05) stays greedy."""
    from kinject.serving.bodies import Chat, GenerateParameters
    from kinject.serving.engine import Params
    from kinject.serving.protocol import generate_params, openai_params

    sampling = Params.from_generation(
        GenerationConfig(max_new_tokens=7, temperature=0.8, top_p=0.5, repetition_penalty=1.3)
    )
    unset = generate_params(GenerateParameters(), sampling)
    assert (unset.max_new_tokens, unset.temperature, unset.top_p, unset.repetition_penalty) == (7, 0.8, 0.5, 1.3)
    assert unset.sampling
    own = generate_params(GenerateParameters(temperature=0.2, top_p=0.9, repetition_penalty=1.0), sampling)
    assert (own.temperature, own.top_p, own.repetition_penalty) == (0.2, 0.9, 1.0)
    chat = openai_params(Chat(messages=HI), sampling)
    assert (chat.max_new_tokens, chat.temperature, chat.top_p, chat.repetition_penalty) == (7, 0.8, 0.5, 1.3)
    whole = openai_params(Chat(messages=HI, top_p=1.0, temperature=0), sampling)  # OpenAI's 1.0: no nucleus cut
    assert whole.top_p is None and not whole.sampling
    greedy = Params.from_generation(GenerationConfig())
    assert not generate_params(GenerateParameters(), greedy).sampling
    assert not openai_params(Chat(messages=HI), greedy).sampling


def test_serve_hands_its_decoding_options_to_the_server(monkeypatch):
    import kinject.serving.serve as serve_module
    from kinject.cli.main import main

    seen = {}

    class Stop(Exception):
        pass

    monkeypatch.setattr(serve_module, "Engine", lambda *a, **k: object())

    def create_app(engine, generation, policy):
        seen["generation"] = generation
        raise Stop

    monkeypatch.setattr(serve_module, "create_app", create_app)
    with pytest.raises(Stop):
        main(
            ["serve", "--temperature", "0.7", "--top-p", "0.8", "--repetition-penalty", "1.2", "--max-new-tokens", "9"]
        )
    assert seen["generation"] == GenerationConfig(max_new_tokens=9, temperature=0.7, top_p=0.8, repetition_penalty=1.2)
