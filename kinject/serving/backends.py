"""Where chat goes: kinject's embedded TGI-protocol server (the default), or a server kinject does not manage.

Every chat is a request in TGI's protocol through huggingface_hub's ``InferenceClient``, whichever server answers:

- **embedded** (default): ``kinject.serving``'s engine for the run's base model, with the run's adapter and merged
  model, on a loopback port in a background thread. Started on the first chat; a run with another base model, or
  an adapter trained again since it was loaded, restarts it with what is needed.
- **TGI** (when ``text-generation-launcher`` is on PATH, as in the Docker image): kinject launches TGI itself with
  the base model and ``--lora-adapters`` for the trained adapters, waits for ``/health``, and launches it again
  when a chat needs an adapter it was not started with (TGI cannot add one while running), or another base model.
- **external** (``KINJECT_ENDPOINT=http://host:port``): a TGI, vLLM or SGLang server started elsewhere. kinject names
  a run's adapter by the run's name (start the server with ``--lora-adapters <run>=<run>/adapter``, or vLLM's
  ``--lora-modules``) and its merged model by ``<run>-merged``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.client import ChatClientError, ServerClient, chat_messages
from ..models.loading import resolve_model
from ..runs import RunDir
from ..runtime.progress import Progress
from ..settings.fields import from_dict
from ..settings.places import chat_endpoint, kinject_home
from ..settings.stages import GenerationConfig, ModelConfig
from .engine import Engine
from .errors import ServeError
from .http import create_app
from .server import ServerThread, free_port


class BackendError(RuntimeError):
    """Chat cannot be served: the message says why and what to do."""


@dataclass
class Target:
    """The server a chat goes to and the names it knows the run's models by."""

    endpoint: str
    base: str
    adapter: str | None
    merged: str | None
    merged_endpoint: str | None = None  # where the merged model is served, when not at ``endpoint``

    def endpoint_of(self, name: str | None) -> str:
        """The server that answers for ``name`` (one of this target's names; None: the base)."""
        return self.merged_endpoint if (self.merged_endpoint and name == self.merged) else self.endpoint


class EmbeddedBackend:
    """kinject's own server, in this process: one engine at a time, for the base model of the run chatted with."""

    name = "embedded"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None
        self._engine: Any = None
        self._key: tuple = ()
        self.endpoint = ""

    def target(self, run: RunDir, progress: Progress | None = None, merged: bool = False) -> Target:
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
        self.stop()
        engine = Engine(
            model.model,
            {name: adapter} if adapter else None,
            {f"{name}-merged": merged} if merged else None,
            model.revision,
            progress=progress,
        )
        try:
            server = ServerThread(create_app(engine))
        except ServeError as exc:
            raise BackendError(str(exc)) from None
        self._server, self._engine, self.endpoint = server, engine, server.url

    def stop(self) -> None:
        """Stop the server and let its models go."""
        if self._server is not None:
            self._server.stop()
        self._server = self._engine = None
        self._key = ()


class ExternalBackend:
    """A TGI-protocol server kinject does not manage (``KINJECT_ENDPOINT``): TGI, vLLM, SGLang or ``kinject serve``.

    A run's adapter is asked for by the run's name. When the server does not list it, kinject loads it where the
    server can do that while running (``kinject serve``'s ``/kinject/adapters``, vLLM's ``/v1/load_lora_adapter``
    when ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), and otherwise says how to start the server with it."""

    name = "external"

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/")
        self.client = ServerClient(self.endpoint)

    def target(self, run: RunDir, progress: Progress | None = None, merged: bool = False) -> Target:
        model = from_dict(ModelConfig, run.section("model"), "model")
        adapter = run.adapter_dir if run.has_adapter() else None
        if adapter is not None:
            self._ensure_adapter(run.name, adapter)
        return Target(
            self.endpoint,
            model.model,
            run.name if adapter else None,
            f"{run.name}-merged" if (run.merged_dir / "config.json").is_file() else None,
        )

    def served(self) -> list[str]:
        """The model names the server lists (``/v1/models``)."""
        try:
            return self.client.models(timeout_s=10)
        except ChatClientError as exc:
            raise BackendError(str(exc)) from None

    def _ensure_adapter(self, name: str, folder: Path) -> None:
        if name in self.served() or self.client.load_adapter(name, folder):
            return
        raise BackendError(
            f"{self.endpoint} does not serve the adapter {name!r} and cannot load it while running: start it with "
            f"the adapter, e.g. TGI: --lora-adapters {name}={folder}; vLLM: --enable-lora --lora-modules "
            f"{name}={folder} (or VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); kinject: kinject serve --adapter "
            f"{name}={folder}"
        )

    def stop(self) -> None:
        pass


class _Launched:
    """One ``text-generation-launcher`` process: started, awaited on ``/health``, stopped with its process group."""

    def __init__(self, launcher: str, log_path: Path, start_timeout_s: float):
        self.launcher, self.log_path, self.start_timeout_s = launcher, log_path, start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""
        self.key: Any = None  # what it was launched with

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self, cmd_for_port: Any, key: Any, progress: Progress | None) -> None:
        import httpx

        self.stop()
        port = free_port()
        cmd = cmd_for_port(port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - the process writes it while it runs
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise BackendError(f"could not start {self.launcher}: {exc}") from None
        finally:
            log.close()
        if progress is not None:
            progress.start("start TGI", total=None)
        self.endpoint, self.key = f"http://127.0.0.1:{port}", key
        deadline = time.time() + self.start_timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise BackendError(
                    f"TGI exited with code {code} while starting ({' '.join(cmd)}); the end of its log "
                    f"({self.log_path}):\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.endpoint + "/health", timeout=2).status_code == 200:
                    if progress is not None:
                        progress.finish()
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        waited = f"{self.start_timeout_s:.0f} s"
        raise BackendError(f"TGI did not answer /health within {waited}; the end of its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the process group (the launcher starts shards and a router)."""
        import signal

        proc, self.proc, self.key = self.proc, None, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class TGIBackend:
    """Text Generation Inference launched by kinject (``text-generation-launcher``): one instance for the base model
    with the adapters, and, when a chat asks for a run's merged model, a second instance serving that folder."""

    name = "tgi"
    LAUNCHER = "text-generation-launcher"

    def __init__(self, launcher: str | None = None, log_dir: str | Path | None = None, start_timeout_s: float = 900):
        self.launcher = launcher or shutil.which(self.LAUNCHER) or self.LAUNCHER
        self.log_dir = Path(log_dir) if log_dir else kinject_home()
        self._lock = threading.Lock()
        self._main = _Launched(self.launcher, self.log_dir / "tgi.log", start_timeout_s)
        self._merged = _Launched(self.launcher, self.log_dir / "tgi-merged.log", start_timeout_s)
        self._adapters: dict[str, tuple[str, float | None]] = {}  # name -> (folder, when it last changed)
        atexit.register(self.stop)

    @property
    def endpoint(self) -> str:
        return self._main.endpoint

    @property
    def log_path(self) -> Path:
        return self._main.log_path

    def command(self, model: str, revision: str | None, adapters: dict[str, str], port: int) -> list[str]:
        """The launcher's command line: the model, the adapters by name, loopback only."""
        cmd = [self.launcher, "--model-id", model, "--hostname", "127.0.0.1", "--port", str(port)]
        if revision:
            cmd += ["--revision", revision]
        if adapters:
            cmd += ["--lora-adapters", ",".join(f"{name}={path}" for name, path in adapters.items())]
        return cmd

    def target(self, run: RunDir, progress: Progress | None = None, merged: bool = False) -> Target:
        """TGI with ``run``'s base model and adapter (and its other adapters so far); with ``merged``, also an
        instance serving the run's merged model, whose endpoint the target gives."""
        cfg = from_dict(ModelConfig, run.section("model"), "model")
        adapter = run.adapter_dir if run.has_adapter() else None
        with self._lock:
            base = (cfg.model, cfg.revision)
            wanted = dict(self._adapters) if self._main.key and self._main.key[0] == base else {}
            if adapter is not None:
                wanted[run.name] = (str(adapter), _stamp(adapter))
            key = (base, tuple(sorted(wanted.items())))
            if not self._main.alive() or self._main.key != key:
                path = resolve_model(cfg.model, cfg.revision, progress).path
                folders = {n: p for n, (p, _) in wanted.items()}
                self._main.launch(lambda port: self.command(path, cfg.revision, folders, port), key, progress)
                self._adapters = wanted
            merged_endpoint = None
            folder = run.merged_dir
            if merged and (folder / "config.json").is_file():
                mkey = (str(folder), _stamp(folder))
                if not self._merged.alive() or self._merged.key != mkey:
                    self._merged.launch(lambda port: self.command(str(folder), None, {}, port), mkey, progress)
                merged_endpoint = self._merged.endpoint
        return Target(
            self._main.endpoint,
            "tgi",
            run.name if adapter else None,
            "tgi" if merged_endpoint else None,
            merged_endpoint,
        )

    def log_tail(self, lines: int = 30) -> str:
        return self._main.log_tail(lines)

    def stop(self) -> None:
        """Stop every TGI this backend launched."""
        self._main.stop()
        self._merged.stop()


def _stamp(path: Path | None) -> float | None:
    """When a model folder last changed (a retrained adapter must be loaded again)."""
    if path is None:
        return None
    return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)


def choose_backend() -> EmbeddedBackend | ExternalBackend | TGIBackend:
    """``KINJECT_ENDPOINT`` when set; else TGI when its launcher is on PATH (the Docker image); else the embedded
    server. ``KINJECT_BACKEND=embedded`` keeps the embedded server even where TGI is installed."""
    endpoint = chat_endpoint()
    if endpoint:
        return ExternalBackend(endpoint)
    if os.environ.get("KINJECT_BACKEND", "").strip() != "embedded" and shutil.which(TGIBackend.LAUNCHER):
        return TGIBackend()
    return EmbeddedBackend()


def stream_chat(
    endpoint: str, model: str | None, messages: list[dict[str, str]], generation: GenerationConfig | None = None
) -> Iterator[str]:
    """The assistant's answer to ``messages`` from ``model`` at ``endpoint``, piece by piece as it streams."""
    try:
        yield from chat_messages(endpoint, model, messages, generation, stream=True)
    except ChatClientError as exc:
        raise BackendError(str(exc)) from None
