"""The routes of TGI's protocol over one engine, and nothing else: every route of TGI's ``openapi.json``, plus
kinject's own ``POST /kinject/adapters``.

What the HTTP layer guards (``HttpPolicy``): a body larger than ``max_body_bytes`` is refused (413) before it is
read; with an API key every route but ``/health`` needs ``Authorization: Bearer KEY``; runtime adapter loading
reads local folders only under ``adapter_root`` (links resolved) and downloads Hub adapters anonymously, never with
the operator's ``HF_TOKEN``. Every error, the framework's own included (404, 405, an unparsable body), is TGI's
``{"error", "error_type"}``; an unparsable body is 422, as TGI answers it.
"""

import hmac
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import GenerationConfig
from . import protocol as p
from .engine import Engine, ServeError, adapter_folder
from .handlers import Serving, in_thread
from .metrics import Metrics

ROUTER = "kinject-tgi-compatible"
VERSION = "3.3.6-kinject"  # the TGI protocol version whose openapi.json the server follows
GENERATION_ROUTES = ("/", "/generate", "/generate_stream", "/v1/chat/completions", "/v1/completions", "/invocations")
OPEN_ROUTES = ("/health",)  # answered without the API key, for load balancers' probes


@dataclass
class HttpPolicy:
    """What a client may do. The defaults suit a server on loopback started by its own user."""

    api_key: str | None = None  # every route but /health then needs "Authorization: Bearer <key>"
    adapter_root: Path | None = None  # POST /kinject/adapters loads local folders only under it (None: none)
    hub_adapters: bool = True  # ... and public Hub adapters, downloaded anonymously
    max_body_bytes: int = 2_000_000  # as TGI's router (axum's default body limit)


def _error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


class _Guard:
    """ASGI middleware: the API key, the body limit (before a byte is parsed) and the request count."""

    def __init__(self, app: Any, policy: HttpPolicy, metrics: Metrics):
        self.app, self.policy, self.metrics = app, policy, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, headers = scope["path"], dict(scope.get("headers") or [])
        key = self.policy.api_key
        if key and path not in OPEN_ROUTES:
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
                bearer = {"www-authenticate": "Bearer"}
                return await _error(401, "Unauthorized: a valid API key is required", "authentication", bearer)(
                    scope, receive, send
                )
        limit = self.policy.max_body_bytes
        length = headers.get(b"content-length")
        too_big = _error(413, f"the request body is larger than {limit} bytes", "validation")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                return await too_big(scope, receive, send)
        elif scope["method"] in ("POST", "PUT", "PATCH"):
            body, more = b"", True  # chunked: read up to the limit ourselves, then replay it
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    return await too_big(scope, receive, send)
            receive = _replay(body, receive)
        if scope["method"] == "POST" and path in GENERATION_ROUTES:
            self.metrics.received()
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _streaming_response() -> Any:
    from starlette.responses import StreamingResponse

    class EventStream(StreamingResponse):
        """Server-sent events whose generation is cancelled however the response ends (a client that closes)."""

        def __init__(self, content: Any, cancel: threading.Event):
            super().__init__(content, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})
            self.cancel = cancel

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self.cancel.set()

    return EventStream


def create_app(
    engine: Engine,
    default_max_new_tokens: int = GenerationConfig.max_new_tokens,
    policy: HttpPolicy | None = None,
) -> Any:
    """The FastAPI application serving ``engine`` over TGI's routes (plus ``POST /kinject/adapters``)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import PlainTextResponse, Response
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

    policy = policy or HttpPolicy()
    metrics = Metrics()
    serving = Serving(engine, default_max_new_tokens, metrics)
    bodies = p.models()
    EventStream = _streaming_response()
    app = FastAPI(title="kinject (TGI protocol)", version=VERSION, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_Guard, policy=policy, metrics=metrics)

    def count_failure(request: Request, error_type: str) -> None:
        if request.method == "POST" and request.url.path in GENERATION_ROUTES:
            metrics.failed(error_type)

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError):
        count_failure(request, exc.error_type)
        return _error(exc.status, str(exc), exc.error_type)

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, exc: Any):
        count_failure(request, "validation")
        return _error(422, "Input validation error: " + _describe(exc.errors()), "validation")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        if exc.status_code == 400:  # FastAPI's "There was an error parsing the body": TGI answers 422
            count_failure(request, "validation")
            return _error(422, f"Input validation error: {exc.detail}", "validation")
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, str(exc.detail), kinds.get(exc.status_code, "http"), exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        count_failure(request, "internal")
        return _error(500, f"Internal server error: {type(exc).__name__}", "internal")

    async def parse(request: Request, model: Any) -> Any:
        """The body as ``model``; raw bytes that are not JSON or not UTF-8 are TGI's 422, like a wrong field."""
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ServeError(f"Input validation error: the body is not valid JSON: {exc}") from None
        return model.model_validate(data)

    # ---------------------------------------------------------------------------------------- information
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
            "max_stop_sequences": p.MAX_STOPS,
            "max_input_tokens": engine.max_total_tokens - 1,
            "max_total_tokens": engine.max_total_tokens,
            "validation_workers": 1,
            "max_client_batch_size": p.MAX_PROMPTS,
            "router": ROUTER,
            "version": VERSION,
            "sha": None,
            "docker_label": None,
        }

    @app.get("/v1/models")
    def models():
        # The list form of OpenAI (and TGI's router), one entry per model a request can name; TGI's openapi.json
        # documents one object, but OpenAI clients read the list (the README says so).
        data = [
            {"id": n, "object": "model", "created": engine.created, "owned_by": engine.model_id}
            for n in engine.names()
        ]
        return {"object": "list", "data": data}

    @app.get("/metrics")
    def prometheus():
        return PlainTextResponse(metrics.render(lambda: engine.in_flight), media_type="text/plain; version=0.0.4")

    def tokenizer_of(name: Any) -> str | None:
        # As TGI, tokenizing reads only the text: adapters share the base's tokenizer, a merged model has its own.
        return name if isinstance(name, str) and name in engine.merged else None

    @app.post("/tokenize")
    async def tokenize(request: Request):
        body = await parse(request, bodies.Tokenize)
        return await in_thread(engine.tokenize, tokenizer_of(body.parameters.get("adapter_id")), body.inputs)

    @app.post("/chat_tokenize")
    async def chat_tokenize(request: Request):
        body = await parse(request, bodies.ChatTokenize)
        target = tokenizer_of(body.model)
        text = engine.chat_text(target, p.chat_messages(body))
        return {"templated_text": text, "tokenize_response": await in_thread(engine.tokenize, target, text)}

    # ----------------------------------------------------------------------------------------- generation
    async def generate_or_stream(request: Request, body: Any, stream: bool, compat: bool) -> Any:
        if not stream:
            answer = await serving.generate(request, body)
            return [answer] if compat else answer
        if body.parameters.decoder_input_details:
            raise ServeError("`decoder_input_details` == true is not supported when streaming tokens")
        job = serving.prepare_generate(body)
        cancel = threading.Event()
        return EventStream(serving.generate_events(body, serving.stream([job], cancel)), cancel)

    async def chat_or_stream(request: Request, body: Any) -> Any:
        if not body.stream:
            return await serving.chat(request, body)
        job = serving.prepare_chat(body)
        cancel = threading.Event()
        return EventStream(serving.chat_events(body, job, serving.stream([job], cancel)), cancel)

    async def completion_or_stream(request: Request, body: Any) -> Any:
        if not body.stream:
            return await serving.completion(request, body)
        jobs = serving.prepare_completion(body)
        cancel = threading.Event()
        return EventStream(serving.completion_events(jobs, serving.stream(jobs, cancel)), cancel)

    @app.post("/generate")
    async def generate(request: Request):
        return await generate_or_stream(request, await parse(request, bodies.Generate), False, False)

    @app.post("/generate_stream")
    async def generate_stream(request: Request):
        return await generate_or_stream(request, await parse(request, bodies.Generate), True, False)

    @app.post("/")
    async def compat_generate(request: Request):
        """TGI's route of the same name: /generate_stream's events with ``stream``, else [/generate's body]."""
        body = await parse(request, bodies.Generate)
        return await generate_or_stream(request, body, body.stream, True)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await chat_or_stream(request, await parse(request, bodies.Chat))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await completion_or_stream(request, await parse(request, bodies.Completion))

    @app.post("/invocations")
    async def invocations(request: Request):
        """SageMaker's route, as TGI maps it: a body with ``inputs`` is /'s, ``messages`` the chat's, ``prompt``
        the completions'."""
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ServeError(f"Input validation error: the body is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "inputs" in data:  # one GenerateResponse, not /'s list of one
            body = bodies.Generate.model_validate(data)
            return await generate_or_stream(request, body, body.stream, False)
        if isinstance(data, dict) and "messages" in data:
            return await chat_or_stream(request, bodies.Chat.model_validate(data))
        if isinstance(data, dict) and "prompt" in data:
            return await completion_or_stream(request, bodies.Completion.model_validate(data))
        raise ServeError("Input validation error: the body needs `inputs`, `messages` or `prompt`")

    # ---------------------------------------------------------------------------------------- kinject's own
    @app.post("/kinject/adapters", status_code=201)
    async def add_adapter(request: Request):
        """Attach an adapter while the server runs (TGI needs a restart): a folder under ``adapter_root`` or a
        public Hub adapter."""
        from ..publish import parse_hub_id

        body = await parse(request, bodies.AddAdapter)
        engine.check_new_name(body.name)
        hub = parse_hub_id(body.path) is not None
        if hub and not policy.hub_adapters:
            raise ServeError("this server does not download Hub adapters (--no-hub-adapters)", 403, "forbidden")
        if not hub and policy.adapter_root is None:
            raise ServeError("this server loads no local adapters at run time (no --adapter-root)", 403, "forbidden")

        def load() -> None:
            engine.add_adapter(body.name, adapter_folder(body.path, policy.adapter_root, hub_token=False))

        await in_thread(load)
        return {"name": body.name, "models": engine.names()}

    return app


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"`{where}`: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts)
