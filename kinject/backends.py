"""Where chat goes: kinject's embedded TGI-protocol server (the default), or a server kinject does not manage.

Every chat is a request in TGI's protocol through huggingface_hub's ``InferenceClient``, whichever server answers:

- **embedded** (default): ``kinject.serve``'s engine for the run's base model, with the run's adapter and merged
  model, on a loopback port in a background thread. Started on the first chat; a run with another base model, or
  an adapter trained again since it was loaded, restarts it with what is needed.
- **external** (``KINJECT_ENDPOINT=http://host:port``): a TGI, vLLM or SGLang server started elsewhere. kinject names
  a run's adapter by the run's name (start the server with ``--lora-adapters <run>=<run>/adapter``, or vLLM's
  ``--lora-modules``) and its merged model by ``<run>-merged``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import GenerationConfig, ModelConfig, from_dict
from .progress import Progress
from .runs import RunDir


class BackendError(RuntimeError):
    """Chat cannot be served: the message says why and what to do."""


@dataclass
class Target:
    """The server a chat goes to and the names it knows the run's models by."""

    endpoint: str
    base: str
    adapter: str | None
    merged: str | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBackend:
    """kinject's own server, in this process: one engine at a time, for the base model of the run chatted with."""

    name = "embedded"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._engine: Any = None
        self._key: tuple = ()
        self.endpoint = ""

    def target(self, run: RunDir, progress: Progress | None = None) -> Target:
        """The embedded server with ``run``'s base model, adapter and merged model loaded (started when needed)."""
        model = from_dict(ModelConfig, run.section("model"), "model")
        adapter = run.adapter_dir if run.has_adapter() else None
        merged = run.merged_dir if (run.merged_dir / "config.json").is_file() else None
        key = (model.model, model.revision, str(run.path), _stamp(adapter), _stamp(merged))
        with self._lock:
            if self._engine is None or self._key != key:
                self._start(model, run.name, adapter, merged, progress)
                self._key = key
        return Target(
            self.endpoint,
            self._engine.model_id,
            run.name if adapter else None,
            f"{run.name}-merged" if merged else None,
        )

    def _start(self, model: ModelConfig, name: str, adapter: Path | None, merged: Path | None, progress) -> None:
        import uvicorn

        from .serve import Engine, create_app

        self.stop()
        engine = Engine(
            model.model,
            {name: adapter} if adapter else None,
            {f"{name}-merged": merged} if merged else None,
            model.revision,
            progress=progress,
        )
        port = _free_port()
        config = uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="kinject-serve", daemon=True)
        thread.start()
        deadline = time.time() + 60
        while not server.started and thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        if not server.started:
            raise BackendError(f"the embedded server did not start on 127.0.0.1:{port}")
        self._server, self._thread, self._engine = server, thread, engine
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop the server and let its models go."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(10)
        self._server = self._thread = self._engine = None
        self._key = ()


class ExternalBackend:
    """A TGI-protocol server kinject does not manage (``KINJECT_ENDPOINT``)."""

    name = "external"

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/")

    def target(self, run: RunDir, progress: Progress | None = None) -> Target:
        model = from_dict(ModelConfig, run.section("model"), "model")
        return Target(
            self.endpoint,
            model.model,
            run.name if run.has_adapter() else None,
            f"{run.name}-merged" if (run.merged_dir / "config.json").is_file() else None,
        )

    def stop(self) -> None:
        pass


def _stamp(path: Path | None) -> float | None:
    """When a model folder last changed (a retrained adapter must be loaded again)."""
    if path is None:
        return None
    return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)


def choose_backend() -> EmbeddedBackend | ExternalBackend:
    """``KINJECT_ENDPOINT`` when set, else the embedded server."""
    endpoint = os.environ.get("KINJECT_ENDPOINT", "").strip()
    return ExternalBackend(endpoint) if endpoint else EmbeddedBackend()


def stream_chat(
    endpoint: str, model: str | None, messages: list[dict[str, str]], generation: GenerationConfig | None = None
) -> Iterator[str]:
    """The assistant's answer to ``messages`` from ``model`` at ``endpoint``, piece by piece as it streams."""
    from .serve import ChatClientError, chat_messages

    try:
        yield from chat_messages(endpoint, model, messages, generation, stream=True)
    except ChatClientError as exc:
        raise BackendError(str(exc)) from None
