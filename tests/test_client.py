"""The one client of TGI-protocol servers (``kinject.models.client``): it never sends the operator's HF token, only the
server's own key, and a generator's reply carries its seed and temperature."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
    from kinject.models.client import chat_messages

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
    from kinject.models.client import ServerClient

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
