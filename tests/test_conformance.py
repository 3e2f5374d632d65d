"""TGI conformance: schemathesis drives the embedded server (tiny random model) from TGI's own ``openapi.json``
with its ``not_a_server_error``, ``status_code_conformance`` and ``response_schema_conformance`` checks.

Two passes, bounded in examples and time: spec-valid bodies on every route, and invalid bodies on the routes whose
spec documents TGI's 422 (``/tokenize`` and ``/chat_tokenize`` document only 200 and 404, as TGI's router does not
promise a validation error there). The one documented deviation, ``/v1/models`` (OpenAI's list, not TGI's single
object; see docs/serving.md), is excluded by name.

The spec is read as TGI means it, with two syntax repairs made here and nowhere else (the file in ``tests/data``
stays TGI's): it declares OpenAPI 3.0 but writes ``exclusiveMinimum`` as 3.1's number, which is put back as 3.0's
``minimum`` plus ``exclusiveMinimum: true``; and its ``text/event-stream`` schemas describe each event's JSON
``data`` (as TGI writes them), which is restated as OpenAPI 3.2's event object whose ``data`` holds that JSON (or
OpenAI's closing ``[DONE]``), the form schemathesis validates.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kinject.settings.stages import GenerationConfig

SPEC = Path(__file__).parent / "data" / "tgi" / "openapi.json"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
WITH_422 = ["/", "/generate", "/generate_stream", "/invocations", "/v1/chat/completions", "/v1/completions"]


def _exclusive_minimum_as_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_exclusive_minimum_as_30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _exclusive_minimum_as_30(v) for k, v in node.items()}
    bound = node.get("exclusiveMinimum")
    if isinstance(bound, (int, float)) and not isinstance(bound, bool):
        node["minimum"] = max(bound, node.get("minimum", bound))
        node["exclusiveMinimum"] = True
    return node


def _event_object(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"type": "string", "enum": ["[DONE]"]},
                    {"type": "string", "contentMediaType": "application/json", "contentSchema": payload},
                ]
            }
        },
    }


def conformance_spec(folder: Path) -> Path:
    """TGI's spec with the two repairs above, written into ``folder``."""
    spec = _exclusive_minimum_as_30(json.loads(SPEC.read_text()))
    for operations in spec["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get("text/event-stream")
                if stream and "schema" in stream:
                    stream["schema"] = _event_object(copy.deepcopy(stream["schema"]))
    out = folder / "openapi.json"
    out.write_text(json.dumps(spec))
    return out


@pytest.fixture(scope="module")
def tgi_server(tiny_model_dir):
    from kinject.serving.engine import Engine
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    # A short context keeps every generation in a few milliseconds, whatever max_new_tokens the fuzzer picks.
    server = ServerThread(
        create_app(Engine(str(tiny_model_dir), max_total_tokens=48), GenerationConfig(max_new_tokens=4))
    )
    yield server
    server.stop()


def schemathesis(spec: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("schemathesis")
    argv = [str(cli), "run", str(spec), "--url", url, "--checks", CHECKS, "--exclude-path", "/v1/models"]
    argv += ["--seed", "7", "--workers", "1", "--request-timeout", "30", "--no-shrink", *args]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=spec.parent)


@pytest.mark.timeout(900)
def test_spec_valid_requests_conform_on_every_route(tgi_server, tmp_path):
    done = schemathesis(conformance_spec(tmp_path), tgi_server.url, "--mode", "positive", "--max-examples", "25")
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
    assert "Tested: 11" in done.stdout  # every route of the spec but /v1/models was exercised


@pytest.mark.timeout(900)
def test_invalid_requests_get_tgis_documented_errors(tgi_server, tmp_path):
    include = [arg for path in WITH_422 for arg in ("--include-path", path)]
    args = ["--mode", "negative", "--max-examples", "25", *include]
    done = schemathesis(conformance_spec(tmp_path), tgi_server.url, *args)
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
    assert f"Tested: {len(WITH_422)}" in done.stdout
