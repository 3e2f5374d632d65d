"""`serve`: an embedded server speaking Text Generation Inference's protocol, for one base model and its adapters.

Routes and bodies are TGI's (its ``openapi.json`` is the contract, copied into ``tests/data/tgi/``); the layers live
in ``kinject.serving`` (engine, protocol, bodies, routes, http, client). A request picks an adapter as TGI does:
``parameters.adapter_id`` on ``/generate``, the ``model`` field on the OpenAI routes (the base when absent,
``"tgi"``, ``"dummy"`` or the base's id). Unlike TGI, an adapter that is not loaded is an error (422) rather than a
silent answer from the base, and adapters can be added while the server runs through ``POST /kinject/adapters``
(local folders under ``--adapter-root`` only; public Hub adapters anonymously).

Off loopback the server needs ``$KINJECT_API_KEY`` (clients send ``Authorization: Bearer KEY``, as TGI's
``--api-key``), or the operator's explicit ``KINJECT_ALLOW_NO_AUTH=1``.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from ..runtime.progress import Progress
from ..settings.places import runs_root
from ..settings.services import ServeConfig
from ..settings.stages import GenerationConfig, ModelConfig
from .engine import Engine
from .errors import ServeError
from .http import HttpPolicy, create_app


def _named(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ServeError(f"{what} {item!r}: use NAME=PATH")
        out[name] = path
    return out


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_policy(config: ServeConfig) -> HttpPolicy:
    """What clients may do, from the settings and the environment; refuses an open server off loopback."""
    key = os.environ.get("KINJECT_API_KEY") or None
    if key is not None and len(key) < 16:
        raise ServeError("KINJECT_API_KEY: use at least 16 characters (a random token, e.g. `openssl rand -hex 16`)")
    if key is None and not is_loopback(config.host):
        if os.environ.get("KINJECT_ALLOW_NO_AUTH") != "1":
            raise ServeError(
                f"refusing to serve on {config.host} without an API key: anyone who reaches it could generate on "
                "this machine and load adapters. Set KINJECT_API_KEY (clients send `Authorization: Bearer KEY`), "
                "or KINJECT_ALLOW_NO_AUTH=1 if a proxy in front authenticates"
            )
        print(f"WARNING: serving on {config.host} with no API key (KINJECT_ALLOW_NO_AUTH=1)", file=sys.stderr)
    root = Path(config.adapter_root).expanduser() if config.adapter_root else runs_root()
    return HttpPolicy(
        api_key=key,
        adapter_root=None if config.adapter_root == "none" else root.resolve(),
        hub_adapters=config.hub_adapters,
        max_body_bytes=config.max_body_bytes,
    )


def serve(
    model: ModelConfig,
    config: ServeConfig,
    generation: GenerationConfig | None = None,
    progress: Progress | None = None,
) -> None:
    """Load the models and serve them until interrupted (blocking). ``generation`` is the decoding of a request
    that leaves it unset: its max_new_tokens, temperature, top_p and repetition_penalty."""
    import uvicorn

    policy = http_policy(config)  # before the model loads: a refused start costs nothing
    engine = Engine(
        model.model,
        _named(config.adapters, "--adapter"),
        _named(config.merged, "--merged"),
        model.revision,
        config.max_concurrent_requests,
        config.max_total_tokens,
        progress,
        config.max_batch_size,
    )
    app = create_app(engine, generation, policy)
    print(f"serving {', '.join(engine.names())} on http://{config.host}:{config.port}", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
