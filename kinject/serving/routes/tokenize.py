"""``/tokenize`` and ``/chat_tokenize``: a text, or a conversation as the chat template writes it, in tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .. import bodies
from .. import protocol as p
from ..engine import Engine
from ..handlers import in_thread
from .common import parse, serving_of

router = APIRouter()


def tokenizer_of(engine: Engine, name: Any) -> str | None:
    # As TGI, tokenizing reads only the text: adapters share the base's tokenizer, a merged model has its own.
    return name if isinstance(name, str) and name in engine.merged else None


@router.post("/tokenize")
async def tokenize(request: Request):
    engine = serving_of(request).engine
    body = await parse(request, bodies.Tokenize)
    return await in_thread(engine.tokenize, tokenizer_of(engine, body.parameters.get("adapter_id")), body.inputs)


@router.post("/chat_tokenize")
async def chat_tokenize(request: Request):
    engine = serving_of(request).engine
    body = await parse(request, bodies.ChatTokenize)
    target = tokenizer_of(engine, body.model)
    text = engine.chat_text(target, p.chat_messages(body))
    return {"templated_text": text, "tokenize_response": await in_thread(engine.tokenize, target, text)}
