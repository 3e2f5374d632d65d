"""TGI's own generation routes: ``/generate``, ``/generate_stream``, ``/`` and SageMaker's ``/invocations``."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request

from .. import bodies
from ..errors import ServeError
from ..handlers import off_loop
from .common import EventStream, json_body, parse, serving_of
from .openai import chat_or_stream, completion_or_stream

router = APIRouter()


async def generate_or_stream(request: Request, body: Any, stream: bool, compat: bool) -> Any:
    """``/generate``'s answer (a list of one with ``compat``, as ``/`` answers), or ``/generate_stream``'s events."""
    serving = serving_of(request)
    if not stream:
        answer = await serving.generate(request, body)
        return [answer] if compat else answer
    if body.parameters.decoder_input_details:
        raise ServeError("`decoder_input_details` == true is not supported when streaming tokens")
    job = await serving.prepare_generate(body)
    cancel = threading.Event()
    return EventStream(serving.generate_events(body, serving.stream([job], cancel)), cancel)


@router.post("/generate")
async def generate(request: Request):
    return await generate_or_stream(request, await parse(request, bodies.Generate), False, False)


@router.post("/generate_stream")
async def generate_stream(request: Request):
    return await generate_or_stream(request, await parse(request, bodies.Generate), True, False)


@router.post("/")
async def compat_generate(request: Request):
    """TGI's route of the same name: /generate_stream's events with ``stream``, else [/generate's body]."""
    body = await parse(request, bodies.Generate)
    return await generate_or_stream(request, body, body.stream, True)


@router.post("/invocations")
async def invocations(request: Request):
    """SageMaker's route, as TGI maps it: a body with ``inputs`` is /'s, ``messages`` the chat's, ``prompt``
    the completions'."""
    data = await json_body(request)
    if isinstance(data, dict) and "inputs" in data:  # one GenerateResponse, not /'s list of one
        body = await off_loop(bodies.Generate.model_validate, data)
        return await generate_or_stream(request, body, body.stream, False)
    if isinstance(data, dict) and "messages" in data:
        return await chat_or_stream(request, await off_loop(bodies.Chat.model_validate, data))
    if isinstance(data, dict) and "prompt" in data:
        return await completion_or_stream(request, await off_loop(bodies.Completion.model_validate, data))
    raise ServeError("Input validation error: the body needs `inputs`, `messages` or `prompt`")
