"""What the server is: ``/health``, ``/info``, ``/v1/models`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from .. import protocol as p
from .common import serving_of

router = APIRouter()


@router.get("/health")
def health():
    return Response(status_code=200)


@router.get("/info")
def info(request: Request):
    engine = serving_of(request).engine
    return {
        "model_id": engine.model_id,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": engine.max_concurrent_requests,
        "max_best_of": 1,
        "max_stop_sequences": p.MAX_STOPS,
        "max_input_tokens": engine.max_input_tokens,
        "max_total_tokens": engine.max_total_tokens,
        "validation_workers": 1,
        "max_client_batch_size": p.MAX_PROMPTS,
        "router": p.ROUTER,
        "version": p.VERSION,
        "sha": None,
        "docker_label": None,
    }


@router.get("/v1/models")
def models(request: Request):
    # The list form of OpenAI (and TGI's router), one entry per model a request can name; TGI's openapi.json
    # documents one object, but OpenAI clients read the list (docs/serving.md says so).
    engine = serving_of(request).engine
    data = [
        {"id": n, "object": "model", "created": engine.created, "owned_by": engine.model_id} for n in engine.names()
    ]
    return {"object": "list", "data": data}


@router.get("/metrics")
def prometheus(request: Request):
    serving = serving_of(request)
    text = serving.metrics.render(lambda: serving.engine.in_flight, lambda: serving.engine.running)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
