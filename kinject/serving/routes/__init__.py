"""The routes of TGI's protocol, one module per API family as vLLM keeps them; each takes the serving object from
the application's state (``common.serving_of``) and turns a request into its calls.

Route functions carry no return annotation: FastAPI would take one for a response model and check every answer
again (the bodies are TGI's, built by ``handlers`` and ``protocol``)."""

from fastapi import APIRouter

from . import adapters, generate, info, openai, tokenize

ROUTERS: tuple[APIRouter, ...] = (info.router, tokenize.router, generate.router, openai.router, adapters.router)
