"""The HTTP application of TGI's protocol over one engine: every route of TGI's ``openapi.json`` (in ``routes``, one
module per API family), plus kinject's own ``POST /kinject/adapters``, the guard in front and TGI's error bodies.

What the HTTP layer guards (``HttpPolicy``): a body larger than ``max_body_bytes`` is refused (413) before it is
read; with an API key every route but ``/health`` needs ``Authorization: Bearer KEY``; runtime adapter loading
reads local folders only under ``adapter_root`` (links resolved) and downloads Hub adapters anonymously, never with
the operator's ``HF_TOKEN``. Every error, the framework's own included (404, 405, an unparsable body), is TGI's
``{"error", "error_type"}``; an unparsable body is 422, as TGI answers it.
"""

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings.stages import GenerationConfig
from .engine import Engine, Params
from .errors import ServeError
from .handlers import Serving
from .metrics import Metrics
from .protocol import VERSION

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


def create_app(engine: Engine, generation: GenerationConfig | None = None, policy: HttpPolicy | None = None) -> Any:
    """The FastAPI application serving ``engine`` over TGI's routes (plus ``POST /kinject/adapters``): the routes
    of ``routes``, which find the serving object and the policy in the application's state. ``generation`` holds
    the decoding a request gets for what it leaves unset (max_new_tokens, temperature, top_p, repetition_penalty;
    greedy at or below temperature 0.05, as kinject decodes)."""
    from fastapi import FastAPI

    from .routes import ROUTERS  # the routes import FastAPI: only an application being built needs them

    metrics = Metrics()
    app = FastAPI(title="kinject (TGI protocol)", version=VERSION, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serving = Serving(engine, Params.from_generation(generation or GenerationConfig()), metrics)
    app.state.policy = policy or HttpPolicy()
    app.add_middleware(_Guard, policy=app.state.policy, metrics=metrics)
    _add_error_handlers(app, metrics)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _add_error_handlers(app: Any, metrics: Metrics) -> None:
    """Every error as TGI's ``{"error", "error_type"}``, the framework's own included; an unparsable body is 422."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

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


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"`{where}`: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts)
