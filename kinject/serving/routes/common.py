"""What every route shares: the serving object from the application's state, a body parsed as TGI parses it, and
a server-sent event stream whose generation is cancelled however the response ends."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from starlette.responses import StreamingResponse

from .. import bodies
from ..handlers import Serving, off_loop


def serving_of(request: Request) -> Serving:
    """The serving object ``create_app`` put in the application's state."""
    return request.app.state.serving


async def json_body(request: Request) -> Any:
    """The body as JSON (``bodies.load_json``, off the event loop); bytes that are not JSON are TGI's 422."""
    return await off_loop(bodies.load_json, await request.body())


async def parse(request: Request, model: Any) -> Any:
    """The body as the pydantic ``model`` (off the event loop); a wrong field is TGI's 422 (through the validation
    error handler)."""
    return await off_loop(bodies.parse, await request.body(), model)


class EventStream(StreamingResponse):
    """Server-sent events whose generation is cancelled however the response ends (a client that closes)."""

    def __init__(self, content: AsyncIterator[str], cancel: threading.Event):
        super().__init__(content, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})
        self.cancel = cancel

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.cancel.set()
