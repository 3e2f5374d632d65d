"""The OpenAI-style routes: ``/v1/chat/completions`` and ``/v1/completions``, plain or streamed."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request

from .. import bodies
from .common import EventStream, parse, serving_of

router = APIRouter()


async def chat_or_stream(request: Request, body: Any) -> Any:
    """The chat's answer, or its events when ``stream`` is set."""
    serving = serving_of(request)
    if not body.stream:
        return await serving.chat(request, body)
    job = await serving.prepare_chat(body)
    cancel = threading.Event()
    return EventStream(serving.chat_events(body, job, serving.stream([job], cancel)), cancel)


async def completion_or_stream(request: Request, body: Any) -> Any:
    """The completions' answer, or their events when ``stream`` is set."""
    serving = serving_of(request)
    if not body.stream:
        return await serving.completion(request, body)
    jobs = await serving.prepare_completion(body)
    cancel = threading.Event()
    return EventStream(serving.completion_events(jobs, serving.stream(jobs, cancel)), cancel)


@router.post("/v1/chat/completions")
async def chat(request: Request):
    return await chat_or_stream(request, await parse(request, bodies.Chat))


@router.post("/v1/completions")
async def completions(request: Request):
    return await completion_or_stream(request, await parse(request, bodies.Completion))
