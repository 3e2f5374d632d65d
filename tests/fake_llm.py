"""A stand-in for a TGI/OpenAI-compatible server on loopback: ``POST /v1/chat/completions`` answers with what
``reply(messages)`` returns, and every request is recorded. Tests give it scripted replies to check what
augmentation keeps and rejects without a real model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from httpserver import in_thread


class FakeLLM(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, reply: Callable[[list[dict[str, str]]], str]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeLLM

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.server.requests.append({"path": self.path, **body})
        if not self.path.endswith("/v1/chat/completions"):
            self._send(404, {"error": "not found", "error_type": "not_found"})
            return
        content = self.server.reply(body["messages"])
        self._send(
            200,
            {
                "id": "fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or "fake",
                "system_fingerprint": "fake",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _send(self, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def fake_llm(reply: Callable[[list[dict[str, str]]], str]) -> AbstractContextManager[FakeLLM]:
    """A started fake OpenAI-compatible server answering with ``reply(messages)``; stopped on exit."""
    return in_thread(FakeLLM(reply))
