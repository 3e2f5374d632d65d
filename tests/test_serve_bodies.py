"""Request bodies as the server parses them (``kinject.serving.bodies``): JSON nested deeper than TGI's parser
allows is TGI's 422 on every route that reads a body, with no traceback in the server's log."""

from __future__ import annotations

import logging

import httpx
import pytest
from test_serve import check

from kinject.serving.bodies import MAX_JSON_DEPTH
from kinject.settings.stages import GenerationConfig

HI = '[{"role": "user", "content": "hi"}]'
# Each route's body with a nested value where the route reads nothing (``x``) or where it keeps any JSON.
BODIES = {
    "/generate": '{"inputs": "hi", "parameters": {"max_new_tokens": 2, "grammar": DEEP}}',
    "/generate_stream": '{"inputs": "hi", "parameters": {"max_new_tokens": 2}, "x": DEEP}',
    "/": '{"inputs": "hi", "parameters": {"max_new_tokens": 2}, "x": DEEP}',
    "/invocations": '{"inputs": "hi", "parameters": {"max_new_tokens": 2}, "x": DEEP}',
    "/v1/chat/completions": '{"messages": ' + HI + ', "max_tokens": 2, "x": DEEP}',
    "/v1/completions": '{"prompt": "hi", "max_tokens": 2, "x": DEEP}',
    "/tokenize": '{"inputs": "hi", "parameters": {"x": DEEP}}',
    "/chat_tokenize": '{"messages": ' + HI + ', "x": DEEP}',
    "/kinject/adapters": '{"name": "a", "path": "b", "x": DEEP}',
}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    from kinject.serving.engine import Engine
    from kinject.serving.http import HttpPolicy, create_app
    from kinject.serving.server import ServerThread

    policy = HttpPolicy(adapter_root=tmp_path_factory.mktemp("adapter-root"))
    srv = ServerThread(create_app(Engine(str(tiny_model_dir)), GenerationConfig(max_new_tokens=4), policy))
    yield srv
    srv.stop()


@pytest.fixture
def logged_errors():
    """The errors uvicorn logs while the test runs (a route that raises logs its traceback there)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def nested(depth: int) -> str:
    """A JSON array holding ``depth`` arrays, the innermost empty."""
    return "[" * depth + "]" * depth


def post(server, path: str, raw: str) -> httpx.Response:
    return httpx.post(server.url + path, content=raw, headers={"content-type": "application/json"}, timeout=60)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 100_000])  # past the limit; past Python's JSON decoder
@pytest.mark.parametrize("path", list(BODIES))
def test_a_deeply_nested_body_is_tgis_422(server, logged_errors, path, depth):
    response = post(server, path, BODIES[path].replace("DEEP", nested(depth)))
    assert response.status_code == 422, response.text[:300]
    check("ErrorResponse", response.json())
    assert response.json() == {
        "error": f"Input validation error: the body nests arrays and objects more than {MAX_JSON_DEPTH} deep",
        "error_type": "validation",
    }
    assert not logged_errors, [r.getMessage() for r in logged_errors]


def test_a_body_nested_as_deep_as_allowed_is_read(server, logged_errors):
    within = BODIES["/tokenize"].replace("DEEP", nested(MAX_JSON_DEPTH - 2))  # under the body and `parameters`
    assert post(server, "/tokenize", within).status_code == 200
    as_deep = post(server, "/generate", nested(MAX_JSON_DEPTH))
    assert as_deep.status_code == 422 and "valid dictionary" in as_deep.json()["error"]  # a list, not a body
    assert not logged_errors
