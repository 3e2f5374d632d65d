"""kinject's own ``POST /kinject/adapters``: attach an adapter while the server runs (TGI needs a restart)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from .. import bodies
from ..adapters import adapter_folder, is_hub_adapter
from ..errors import ServeError
from ..handlers import in_thread
from .common import parse, serving_of

router = APIRouter()


@router.post("/kinject/adapters", status_code=201)
async def add_adapter(request: Request):
    """Attach an adapter while the server runs (TGI needs a restart): a folder under ``adapter_root`` (a relative
    path is read from there) or a public Hub adapter."""
    engine, policy = serving_of(request).engine, request.app.state.policy
    body = await parse(request, bodies.AddAdapter)
    engine.check_new_name(body.name)
    hub = is_hub_adapter(body.path, policy.adapter_root)
    if hub and not policy.hub_adapters:
        raise ServeError("this server does not download Hub adapters (--no-hub-adapters)", 403, "forbidden")
    if not hub and policy.adapter_root is None:
        raise ServeError("this server loads no local adapters at run time (no --adapter-root)", 403, "forbidden")

    def load() -> None:
        engine.add_adapter(body.name, adapter_folder(body.path, policy.adapter_root, hub_token=False))

    await in_thread(load)
    return {"name": body.name, "models": engine.names()}
