"""`serve`: an embedded server speaking Text Generation Inference's protocol, for one base model and its adapters.

Routes and bodies are TGI's (its ``openapi.json`` is the contract, copied into ``tests/data/tgi/``): ``/generate``,
``/generate_stream`` (server-sent events), ``/`` (either, by ``stream``), ``/v1/chat/completions`` (streaming and
not), ``/v1/models``, ``/info`` and ``/health``; errors are ``{"error", "error_type"}`` with TGI's status codes
(422 for invalid input, 424 when generation fails, 429 when the request queue is full). A request picks an adapter
as TGI does: ``parameters.adapter_id`` on ``/generate``, the ``model`` field on ``/v1/chat/completions`` (the base
when absent, ``"tgi"``, ``"dummy"`` or the base's id). Unlike TGI, an adapter that is not loaded is an error (422)
rather than a silent answer from the base, and adapters can be added while the server runs through kinject's own
route ``POST /kinject/adapters`` (TGI needs a restart for that).

One engine owns the models: the base with every adapter attached by name (peft), plus merged models as models of
their own. Generation runs one request at a time under a lock, so requests to different adapters run one after
another and never see each other's adapter; up to ``max_concurrent_requests`` wait their turn, beyond that a
request is refused at once with TGI's overload error.
"""

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ChatConfig, GenerationConfig, ModelConfig, ServeConfig
from .errors import KinjectError
from .models import load_model, load_tokenizer, resolve_model
from .progress import Progress
from .runs import RunDir, RunError

ROUTER = "kinject-tgi-compatible"
VERSION = "3.3.6-kinject"  # the TGI protocol version whose openapi.json the server follows
# Names of the base model in the chat route's ``model`` field: TGI's "tgi", and "dummy", which huggingface_hub's
# InferenceClient sends when it is given a server URL and no model.
BASE_ALIASES = ("tgi", "dummy")


class ServeError(KinjectError):
    """A request the server refuses, with TGI's status code and error type."""

    def __init__(self, message: str, status: int = 422, error_type: str = "validation"):
        super().__init__(message)
        self.status, self.error_type = status, error_type

    def body(self) -> dict[str, str]:
        return {"error": str(self), "error_type": self.error_type}


class Overloaded(ServeError):
    def __init__(self) -> None:
        super().__init__("Model is overloaded", 429, "overloaded")


# ---------------------------------------------------------------------------------------------------- the engine


@dataclass
class Params:
    """Decoding settings of one request (TGI's ``GenerateParameters``, validated)."""

    max_new_tokens: int = GenerationConfig.max_new_tokens
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    do_sample: bool = False
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    @classmethod
    def from_generation(cls, gen: GenerationConfig) -> "Params":
        """kinject's decoding settings as a request's (greedy at or below temperature 0.05, as kinject decodes)."""
        if gen.greedy:
            return cls(max_new_tokens=gen.max_new_tokens, repetition_penalty=gen.repetition_penalty)
        return cls(
            max_new_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p if gen.top_p < 1 else None,
            repetition_penalty=gen.repetition_penalty,
            do_sample=True,
        )

    @property
    def sampling(self) -> bool:
        """TGI samples when asked to, or when a sampling setting is given; temperature 0 means greedy."""
        if self.temperature == 0:
            return False
        return self.do_sample or any(v is not None for v in (self.temperature, self.top_p, self.top_k))


@dataclass
class TokenOut:
    id: int
    text: str
    logprob: float | None
    special: bool


@dataclass
class Generation:
    """What one request produced."""

    tokens: list[TokenOut]
    text: str
    finish_reason: str  # length | eos_token | stop_sequence
    input_length: int
    seed: int | None


class Engine:
    """One base model with named adapters, and merged models; generation one request at a time."""

    def __init__(
        self,
        model: str,
        adapters: dict[str, str | Path] | None = None,
        merged: dict[str, str | Path] | None = None,
        revision: str | None = None,
        max_concurrent_requests: int = 16,
        max_total_tokens: int | None = None,
        progress: Progress | None = None,
    ):
        progress = progress or Progress()
        resolved = resolve_model(model, revision, progress)
        self.model_id = model
        self.tokenizer = load_tokenizer(resolved)
        self.model = load_model(resolved).eval()
        self.adapters: dict[str, Path] = {}
        self.merged: dict[str, tuple[Any, Any]] = {}
        self.created = int(time.time())
        self.max_concurrent_requests = max_concurrent_requests
        context = getattr(self.model.config, "max_position_embeddings", None) or 8192
        self.max_total_tokens = min(max_total_tokens or context, context)
        self._lock = threading.Lock()  # one generation at a time: the active adapter is shared model state
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        for name, path in (adapters or {}).items():
            self.add_adapter(name, path)
        for name, path in (merged or {}).items():
            self.add_merged(name, path)

    # ------------------------------------------------------------------------------------------------ models
    def names(self) -> list[str]:
        """Every model a request can name: the base, the adapters, the merged models."""
        return [self.model_id, *self.adapters, *self.merged]

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Attach a LoRA adapter (a run folder, or a folder holding ``adapter_config.json``) under ``name``."""
        from peft import PeftModel

        self._check_name(name)
        folder = _adapter_folder(path)
        with self._lock:
            if self.adapters:
                self.model.load_adapter(str(folder), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name).eval()
            self.adapters[name] = folder

    def add_merged(self, name: str, path: str | Path) -> None:
        """Load a merged model folder (``kinject merge``'s output, or any model folder) as a model of its own."""
        self._check_name(name)
        folder = Path(path)
        if RunDir(folder).is_run():
            folder = RunDir(folder).merged_dir
        if not (folder / "config.json").is_file():
            raise ServeError(f"{path} holds no merged model (config.json not found; run `kinject merge` first)")
        resolved = resolve_model(str(folder))
        self.merged[name] = (load_model(resolved).eval(), load_tokenizer(resolved))

    def _check_name(self, name: str) -> None:
        if not name or name in BASE_ALIASES or name == self.model_id:
            raise ServeError(f"{name!r} cannot name an adapter: it is the base model's name")
        if name in self.adapters or name in self.merged:
            raise ServeError(f"a model named {name!r} is already loaded")

    def resolve(self, name: str | None) -> str | None:
        """The adapter or merged model a request names (None: the base); an unknown name is an error."""
        if name is None or name in BASE_ALIASES or name == self.model_id:
            return None
        if name in self.adapters or name in self.merged:
            return name
        raise ServeError(f"model or adapter {name!r} is not loaded; loaded: {', '.join(self.names())}")

    # ----------------------------------------------------------------------------------------------- requests
    def slot(self):
        """A place in the request queue, or ``Overloaded`` at once when all are taken."""
        if not self._slots.acquire(blocking=False):
            raise Overloaded()
        return _Release(self._slots)

    def tokenizer_for(self, target: str | None) -> Any:
        return self.merged[target][1] if target in self.merged else self.tokenizer

    def encode(self, target: str | None, text: str) -> list[int]:
        return self.tokenizer_for(target)(text, add_special_tokens=True)["input_ids"]

    def chat_ids(self, target: str | None, messages: list[dict[str, str]]) -> list[int]:
        from .generate import chat_prompt_ids

        tokenizer = self.tokenizer_for(target)
        if not getattr(tokenizer, "chat_template", None):
            raise ServeError("this model has no chat template: use /generate", 422, "template_error")
        return chat_prompt_ids(tokenizer, messages)

    def check_length(self, input_ids: list[int], params: Params) -> None:
        if not input_ids:
            raise ServeError("`inputs` cannot be empty")
        total = len(input_ids) + params.max_new_tokens
        if total > self.max_total_tokens:
            raise ServeError(
                f"`inputs` tokens + `max_new_tokens` must be <= {self.max_total_tokens}. Given: {len(input_ids)} "
                f"`inputs` tokens and {params.max_new_tokens} `max_new_tokens`"
            )

    def generate(self, target: str | None, input_ids: list[int], params: Params, on_token: Any = None) -> Generation:
        """Generate for ``target`` (None: the base). ``on_token(TokenOut)`` is called as each token is made."""
        import torch
        from transformers.generation.streamers import BaseStreamer

        tokenizer = self.tokenizer_for(target)
        eos = tokenizer.eos_token_id
        special = set(tokenizer.all_special_ids)
        made: list[int] = []

        class Streamer(BaseStreamer):
            first = True

            def put(self, value):
                if self.first:  # the prompt comes first
                    self.first = False
                    return
                for token in value.reshape(-1).tolist():
                    made.append(token)
                    if on_token is not None:
                        text = "" if token in special else tokenizer.decode([token])
                        on_token(TokenOut(token, text, None, token in special))

            def end(self):
                pass

        kw: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
            "eos_token_id": eos,
            "repetition_penalty": params.repetition_penalty or 1.0,
            "output_scores": True,
            "return_dict_in_generate": True,
        }
        if params.sampling:
            kw.update(
                do_sample=True,
                temperature=params.temperature or 1.0,
                top_p=params.top_p,
                top_k=params.top_k or 0,
            )
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kw.update(stop_strings=params.stop, tokenizer=tokenizer)
        seed = (
            params.seed if params.seed is not None else (int(time.time() * 1000) % 2**31 if params.sampling else None)
        )
        try:
            with self._lock:
                model, context = self._model_for(target)
                ids = torch.tensor([input_ids], device=next(model.parameters()).device)
                if seed is not None:
                    torch.manual_seed(seed)
                with context, torch.no_grad():
                    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=Streamer(), **kw)
        except ServeError:
            raise
        except Exception as exc:  # noqa: BLE001 - TGI's "generation" error, with what went wrong
            raise ServeError(
                f"Request failed during generation: {type(exc).__name__}: {exc}", 424, "generation"
            ) from exc
        new = out.sequences[0, len(input_ids) :].tolist()
        logprobs = [
            float(torch.log_softmax(score[0].float(), dim=-1)[token])
            for score, token in zip(out.scores, new, strict=False)
        ]
        tokens = [
            TokenOut(t, "" if t in special else tokenizer.decode([t]), lp, t in special)
            for t, lp in zip(new, logprobs, strict=False)
        ]
        if eos in new:
            cut = new.index(eos)
            text_ids, finish = new[:cut], "eos_token"
        else:
            text_ids, finish = new, "length"
        text = tokenizer.decode(text_ids, skip_special_tokens=True)
        if finish == "length" and params.stop and any(text.endswith(s) for s in params.stop):
            finish = "stop_sequence"
        return Generation(tokens, text, finish, len(input_ids), seed)

    def _model_for(self, target: str | None) -> tuple[Any, Any]:
        """(model, context manager) that answers as ``target``; call under the lock."""
        import contextlib

        if target in self.merged:
            return self.merged[target][0], contextlib.nullcontext()
        if target is None:
            if self.adapters:
                return self.model, self.model.disable_adapter()
            return self.model, contextlib.nullcontext()
        self.model.set_adapter(target)
        return self.model, contextlib.nullcontext()


class _Release:
    """Gives a queue slot back exactly once (a streamed response releases it when the stream ends)."""

    def __init__(self, semaphore: threading.BoundedSemaphore):
        self._semaphore, self._done = semaphore, False

    def __call__(self) -> None:
        if not self._done:
            self._done = True
            self._semaphore.release()


def _adapter_folder(path: str | Path) -> Path:
    """The adapter of ``path``: the folder itself when it holds ``adapter_config.json``, a run's adapter, or a Hub
    adapter ``OWNER/NAME[@revision]`` (downloaded once into huggingface_hub's cache)."""
    from .publish import PublishError, download_adapter, parse_hub_id

    if parse_hub_id(str(path)) is not None:
        try:
            return download_adapter(str(path))
        except PublishError as exc:
            raise ServeError(str(exc)) from None
    folder = Path(path)
    if RunDir.holds_adapter(folder):
        return folder
    run = RunDir(folder)
    if run.is_run():
        try:
            return run.require_adapter()
        except RunError as exc:
            raise ServeError(str(exc)) from None
    raise ServeError(f"{path} is neither a kinject run with an adapter nor a folder with adapter_config.json")


# ------------------------------------------------------------------------------------------------ request bodies


def _pydantic_models():
    """TGI's request bodies as pydantic models (built lazily: importing kinject must not import FastAPI)."""
    from pydantic import BaseModel, ConfigDict, Field

    class GenerateParameters(BaseModel):
        model_config = ConfigDict(extra="ignore")
        adapter_id: str | None = None
        best_of: int | None = Field(None, gt=0)
        decoder_input_details: bool = False
        details: bool = False
        do_sample: bool = False
        frequency_penalty: float | None = Field(None, ge=-2, le=2)
        grammar: Any = None
        max_new_tokens: int | None = Field(None, gt=0)
        repetition_penalty: float | None = Field(None, gt=0)
        return_full_text: bool | None = None
        seed: int | None = Field(None, ge=0)
        stop: list[str] = Field(default_factory=list, max_length=4)
        temperature: float | None = Field(None, gt=0)
        top_k: int | None = Field(None, gt=0)
        top_n_tokens: int | None = Field(None, ge=0)
        top_p: float | None = Field(None, gt=0, lt=1)
        truncate: int | None = Field(None, ge=0)
        typical_p: float | None = Field(None, gt=0, lt=1)
        watermark: bool = False

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        inputs: str
        parameters: GenerateParameters = Field(default_factory=GenerateParameters)
        stream: bool = False

    class Message(BaseModel):
        model_config = ConfigDict(extra="ignore")
        role: str
        content: str | list[dict[str, Any]] | None = None
        name: str | None = None

    class StreamOptions(BaseModel):
        include_usage: bool = False

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        messages: list[Message] = Field(min_length=1)
        model: str | None = None
        max_tokens: int | None = Field(None, gt=0)
        max_completion_tokens: int | None = Field(None, gt=0)
        temperature: float | None = Field(None, ge=0)
        top_p: float | None = Field(None, gt=0, le=1)
        seed: int | None = Field(None, ge=0)
        stop: list[str] | str | None = None
        frequency_penalty: float | None = Field(None, ge=-2, le=2)
        presence_penalty: float | None = Field(None, ge=-2, le=2)
        stream: bool = False
        stream_options: StreamOptions | None = None
        logprobs: bool | None = None
        top_logprobs: int | None = Field(None, ge=0, le=5)

    class AddAdapter(BaseModel):
        name: str = Field(min_length=1)
        path: str = Field(min_length=1)

    return GenerateRequest, ChatRequest, AddAdapter


def _params(p: Any, default_max: int) -> Params:
    if p.best_of not in (None, 1):
        raise ServeError("`best_of` != 1 is not supported by kinject's server")
    if p.top_p is not None and not 0 < p.top_p < 1:
        raise ServeError("`top_p` must be > 0.0 and < 1.0")
    return Params(
        max_new_tokens=p.max_new_tokens or default_max,
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        repetition_penalty=p.repetition_penalty,
        do_sample=p.do_sample,
        seed=p.seed,
        stop=list(p.stop),
    )


def _chat_params(r: Any, default_max: int) -> Params:
    stop = [r.stop] if isinstance(r.stop, str) else list(r.stop or [])
    if len(stop) > 4:
        raise ServeError(f"`stop` supports up to 4 stop sequences. Given: {len(stop)}")
    top_p = r.top_p if r.top_p is not None and r.top_p < 1 else None  # OpenAI's 1.0 means "no nucleus cut"
    return Params(
        max_new_tokens=r.max_tokens or r.max_completion_tokens or default_max,
        temperature=r.temperature,
        top_p=top_p,
        repetition_penalty=r.presence_penalty + 2 if r.presence_penalty is not None else None,
        seed=r.seed,
        stop=stop,
    )


def _messages(r: Any) -> list[dict[str, str]]:
    out = []
    for m in r.messages:
        content = m.content
        if isinstance(content, list):
            content = "".join(c.get("text", "") for c in content if c.get("type") == "text")
        out.append({"role": m.role, "content": content or ""})
    return out


def _token(t: TokenOut) -> dict[str, Any]:
    return {"id": t.id, "text": t.text, "logprob": t.logprob, "special": t.special}


def _sse(data: Any) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


# ---------------------------------------------------------------------------------------------------- the app


def create_app(engine: Engine, default_max_new_tokens: int = GenerationConfig.max_new_tokens):
    """The FastAPI application serving ``engine`` over TGI's routes (plus ``POST /kinject/adapters``)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    GenerateRequest, ChatRequest, AddAdapter = _pydantic_models()
    app = FastAPI(title="kinject (TGI protocol)", version=VERSION)
    fingerprint = f"{VERSION}-native"

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"`{where}`: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"error": "Input validation error: " + "; ".join(parts), "error_type": "validation"}, 422)

    @app.get("/health")
    def health():
        return Response(status_code=200)

    @app.get("/info")
    def info():
        return {
            "model_id": engine.model_id,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": engine.max_concurrent_requests,
            "max_best_of": 1,
            "max_stop_sequences": 4,
            "max_input_tokens": engine.max_total_tokens - 1,
            "max_total_tokens": engine.max_total_tokens,
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": ROUTER,
            "version": VERSION,
            "sha": None,
            "docker_label": None,
        }

    @app.get("/v1/models")
    def models():
        # The list form of OpenAI (and TGI's router), one entry per model a request can name.
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": engine.created, "owned_by": engine.model_id}
                for name in engine.names()
            ],
        }

    @app.post("/kinject/adapters", status_code=201)
    def add_adapter(body: AddAdapter):
        """kinject's own route (not TGI's): attach a newly trained adapter while the server runs."""
        engine.add_adapter(body.name, body.path)
        return {"name": body.name, "models": engine.names()}

    def _prepare(body: Any) -> tuple[str | None, list[int], Params]:
        target = engine.resolve(body.parameters.adapter_id)
        params = _params(body.parameters, default_max_new_tokens)
        if not body.inputs:
            raise ServeError("`inputs` cannot be empty")
        ids = engine.encode(target, body.inputs)
        engine.check_length(ids, params)
        return target, ids, params

    @app.post("/generate")
    def generate(body: GenerateRequest):
        target, ids, params = _prepare(body)
        release = engine.slot()
        try:
            g = engine.generate(target, ids, params)
        finally:
            release()
        text = (body.inputs + g.text) if body.parameters.return_full_text else g.text
        out: dict[str, Any] = {"generated_text": text}
        if body.parameters.details or body.parameters.decoder_input_details:
            out["details"] = {
                "finish_reason": g.finish_reason,
                "generated_tokens": len(g.tokens),
                "seed": g.seed,
                "prefill": [],
                "tokens": [_token(t) for t in g.tokens],
            }
        return out

    def _stream(run: Any, release: Any) -> Iterator[str]:
        """Run ``run(on_token)`` in a thread and yield its events as they come (None ends them)."""
        events: queue.Queue = queue.Queue()

        def work():
            try:
                run(events.put)
            except ServeError as exc:
                events.put(exc)
            except Exception as exc:  # noqa: BLE001
                events.put(ServeError(f"{type(exc).__name__}: {exc}", 500, "incomplete_generation_stream"))
            finally:
                release()
                events.put(None)

        threading.Thread(target=work, daemon=True).start()
        while (event := events.get()) is not None:
            yield event

    @app.post("/generate_stream")
    def generate_stream(body: GenerateRequest):
        target, ids, params = _prepare(body)
        release = engine.slot()
        if body.parameters.decoder_input_details:
            release()
            raise ServeError("`decoder_input_details` == true is not supported when streaming tokens")

        def run(put):
            count = [0]

            def on_token(t: TokenOut):
                count[0] += 1
                put(("token", count[0], t))

            put(("done", count, engine.generate(target, ids, params, on_token)))

        def events() -> Iterator[str]:
            pending = None
            for event in _stream(run, release):
                if isinstance(event, ServeError):
                    yield _sse(event.body())
                    return
                kind, index, payload = event
                if kind == "token":
                    if pending is not None:
                        yield _sse(pending)
                    pending = {"index": index, "token": _token(payload), "generated_text": None, "details": None}
                else:  # the last token's event carries the text and details
                    g: Generation = payload
                    if pending is None:
                        return
                    text = (body.inputs + g.text) if body.parameters.return_full_text else g.text
                    pending["generated_text"] = text
                    if body.parameters.details:
                        pending["details"] = {
                            "finish_reason": g.finish_reason,
                            "generated_tokens": len(g.tokens),
                            "input_length": g.input_length,
                            "seed": g.seed,
                        }
                    yield _sse(pending)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    @app.post("/")
    def compat_generate(body: GenerateRequest):
        """TGI's route of the same name: /generate_stream's events with ``stream``, else [/generate's body]."""
        return generate_stream(body) if body.stream else [generate(body)]

    @app.post("/v1/chat/completions")
    def chat(body: ChatRequest):
        target = engine.resolve(body.model)
        params = _chat_params(body, default_max_new_tokens)
        ids = engine.chat_ids(target, _messages(body))
        engine.check_length(ids, params)
        name = body.model if target is not None else engine.model_id
        created, chat_id = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        release = engine.slot()
        if not body.stream:
            try:
                g = engine.generate(target, ids, params)
            finally:
                release()
            return {
                "object": "chat.completion",
                "id": chat_id,
                "created": created,
                "model": name,
                "system_fingerprint": fingerprint,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": g.text},
                        "logprobs": None,
                        "finish_reason": _chat_finish(g.finish_reason),
                    }
                ],
                "usage": _usage(g),
            }

        def chunk(delta: dict[str, Any] | None, finish: str | None, usage: Any = None, choices: bool = True):
            return {
                "object": "chat.completion.chunk",
                "id": chat_id,
                "created": created,
                "model": name,
                "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                if choices
                else [],
                "usage": usage,
            }

        def run(put):
            put(("done", engine.generate(target, ids, params, lambda t: put(("token", t)))))

        def events() -> Iterator[str]:
            pending = None
            for event in _stream(run, release):
                if isinstance(event, ServeError):
                    yield _sse({"error": {"message": str(event), "http_status_code": event.status}})
                    break
                kind, payload = event
                if kind == "token":
                    if pending is not None:
                        yield _sse(chunk({"role": "assistant", "content": pending.text}, None))
                    pending = payload
                else:
                    g: Generation = payload
                    if pending is not None:
                        text = "" if pending.special else pending.text
                        yield _sse(chunk({"role": "assistant", "content": text}, _chat_finish(g.finish_reason)))
                    if body.stream_options and body.stream_options.include_usage:
                        yield _sse(chunk(None, None, _usage(g), choices=False))
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    return app


def _chat_finish(reason: str) -> str:
    return "stop" if reason == "eos_token" else reason


def _usage(g: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": g.input_length,
        "completion_tokens": len(g.tokens),
        "total_tokens": g.input_length + len(g.tokens),
    }


def free_port() -> int:
    """A TCP port free on the loopback address now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a daemon thread of this process (the app's Chat
    tab, the tests, the serving benchmark); ``url`` answers once it is built."""

    def __init__(self, app: Any, timeout_s: float = 60):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="kinject-serve", daemon=True)
        self.thread.start()
        deadline = time.time() + timeout_s
        while not self.server.started and self.thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            self.stop()
            raise ServeError(f"the embedded server did not start on 127.0.0.1:{self.port}", 500, "startup")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# ------------------------------------------------------------------------------------------------------ the verb


def _named(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ServeError(f"{what} {item!r}: use NAME=PATH")
        out[name] = path
    return out


def serve(
    model: ModelConfig,
    config: ServeConfig,
    generation: GenerationConfig | None = None,
    progress: Progress | None = None,
) -> None:
    """Load the models and serve them until interrupted (blocking). ``generation.max_new_tokens`` is the default of
    a request that sets none."""
    import uvicorn

    engine = Engine(
        model.model,
        _named(config.adapters, "--adapter"),
        _named(config.merged, "--merged"),
        model.revision,
        config.max_concurrent_requests,
        config.max_total_tokens,
        progress,
    )
    app = create_app(engine, (generation or GenerationConfig()).max_new_tokens)
    print(f"serving {', '.join(engine.names())} on http://{config.host}:{config.port}", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")


# ------------------------------------------------------------------------------------------------------ a client


class ChatClientError(KinjectError, RuntimeError):
    """The server could not be reached or refused the request; the message says which and why."""


def chat_once(
    config: ChatConfig, message: str, generation: GenerationConfig | None = None, stream: bool = True
) -> Iterator[str]:
    """One user turn (after ``config.system``, if any) to the server ``config`` names; yields the answer."""
    messages = ([{"role": "system", "content": config.system}] if config.system else []) + [
        {"role": "user", "content": message}
    ]
    return chat_messages(config.endpoint, config.model, messages, generation, stream)


def chat_messages(
    endpoint: str,
    model: str | None,
    messages: list[dict[str, str]],
    generation: GenerationConfig | None = None,
    stream: bool = True,
) -> Iterator[str]:
    """Send a conversation to a TGI-protocol server with huggingface_hub's ``InferenceClient``; yields the answer
    (piece by piece when streaming). ``model``: the adapter or model to ask (None: the base, TGI's "tgi"). The
    generation settings go as the request's (temperature at or below 0.05 as 0, greedy, as kinject decodes)."""
    from huggingface_hub import InferenceClient

    from .publish import parse_hub_id

    gen = generation or GenerationConfig()
    client = InferenceClient(base_url=endpoint.rstrip("/"), timeout=600)
    if model and parse_hub_id(model) is not None:
        _ensure_hub_adapter(endpoint, model)
    try:
        reply = client.chat_completion(
            messages,
            model=model or "tgi",
            max_tokens=gen.max_new_tokens,
            temperature=0.0 if gen.greedy else gen.temperature,
            top_p=None if gen.greedy else gen.top_p,
            stream=stream,
        )
        if not stream:
            yield reply.choices[0].message.content or ""
            return
        for chunk in reply:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
    except Exception as exc:  # noqa: BLE001 - connection errors, HTTP errors with the server's message
        raise ChatClientError(f"{endpoint}: {_client_message(exc)}") from None


def _ensure_hub_adapter(endpoint: str, model: str) -> None:
    """Make a Hub adapter ``model`` known to the server: nothing when it lists it already; a kinject server
    downloads it (``POST /kinject/adapters``); others are told how to start with it."""
    import httpx

    base = endpoint.rstrip("/")
    try:
        listed = httpx.get(f"{base}/v1/models", timeout=30)
        if listed.status_code == 200 and model in {m.get("id") for m in listed.json().get("data", [])}:
            return
        added = httpx.post(f"{base}/kinject/adapters", json={"name": model, "path": model}, timeout=600)
    except httpx.HTTPError as exc:
        raise ChatClientError(f"{endpoint}: {type(exc).__name__}: {exc}") from None
    if added.status_code == 201:
        return
    if added.status_code in (404, 405):
        raise ChatClientError(
            f"{endpoint} does not serve the Hub adapter {model} and cannot load one at run time: start TGI with "
            f"--lora-adapters {model}, or vLLM with --enable-lora --lora-modules {model}={model}"
        )
    raise ChatClientError(f"{endpoint}: could not load {model}: {_client_message(_Failed(added))}")


class _Failed(Exception):
    def __init__(self, response: Any) -> None:
        self.response = response


def _client_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
            return f"{response.status_code}: {body.get('error') or body}"
        except Exception:  # noqa: BLE001
            return f"{response.status_code}: {response.text[:300]}"
    return f"{type(exc).__name__}: {exc}"
