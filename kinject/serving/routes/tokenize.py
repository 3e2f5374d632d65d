"""``/tokenize`` and ``/chat_tokenize``: a text, or a conversation as the chat template writes it, in tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import bodies
from .common import parse, serving_of

router = APIRouter()


@router.post("/tokenize")
async def tokenize(request: Request):
    answer = await serving_of(request).tokenize(await parse(request, bodies.Tokenize))
    return Response(answer, media_type="application/json")


@router.post("/chat_tokenize")
async def chat_tokenize(request: Request):
    answer = await serving_of(request).chat_tokenize(await parse(request, bodies.ChatTokenize))
    return Response(answer, media_type="application/json")
