"""The client for TGI-protocol servers (kinject's own, TGI, vLLM, SGLang): one conversation turn through
huggingface_hub's ``InferenceClient``, and runtime loading of a Hub adapter into ``kinject serve``.

The client never sends the operator's ``HF_TOKEN`` to a server: ``InferenceClient`` would, for any URL, when no key
is given. It sends ``$KINJECT_API_KEY`` (the key ``kinject serve`` asks for off loopback), else a placeholder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..config import ChatConfig, GenerationConfig
from ..errors import KinjectError

NO_KEY = "no-key"  # sent where there is no key, so InferenceClient does not fall back on the HF token


def api_key() -> str:
    """The key to send to a TGI-protocol server: ``$KINJECT_API_KEY``, else a placeholder (never the HF token)."""
    return os.environ.get("KINJECT_API_KEY") or NO_KEY


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key()}"}


class ChatClientError(KinjectError, RuntimeError):
    """The server could not be reached or refused the request; the message says which and why."""


def chat_once(
    config: ChatConfig, message: str, generation: GenerationConfig | None = None, stream: bool = True
) -> Iterator[str]:
    """One user turn (after ``config.system``, if any) to the server ``config`` names; yields the answer."""
    messages = ([{"role": "system", "content": config.system}] if config.system else []) + [
        {"role": "user", "content": message}
    ]
    return chat_messages(config.endpoint, config.model, messages, generation, stream)


def chat_messages(
    endpoint: str,
    model: str | None,
    messages: list[dict[str, str]],
    generation: GenerationConfig | None = None,
    stream: bool = True,
) -> Iterator[str]:
    """Send a conversation to a TGI-protocol server with huggingface_hub's ``InferenceClient``; yields the answer
    (piece by piece when streaming). ``model``: the adapter or model to ask (None: the base, TGI's "tgi"). The
    generation settings go as the request's (temperature at or below 0.05 as 0, greedy, as kinject decodes)."""
    from huggingface_hub import InferenceClient

    from ..publish import parse_hub_id

    gen = generation or GenerationConfig()
    client = InferenceClient(base_url=endpoint.rstrip("/"), api_key=api_key(), timeout=600)
    if model and parse_hub_id(model) is not None:
        _ensure_hub_adapter(endpoint, model)
    try:
        reply = client.chat_completion(
            messages,
            model=model or "tgi",
            max_tokens=gen.max_new_tokens,
            temperature=0.0 if gen.greedy else gen.temperature,
            top_p=None if gen.greedy else gen.top_p,
            stream=stream,
        )
        if not stream:
            yield reply.choices[0].message.content or ""
            return
        for chunk in reply:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
    except Exception as exc:  # noqa: BLE001 - connection errors, HTTP errors with the server's message
        raise ChatClientError(f"{endpoint}: {_client_message(exc)}") from None


def _ensure_hub_adapter(endpoint: str, model: str) -> None:
    """Make a Hub adapter ``model`` known to the server: nothing when it lists it already; a kinject server
    downloads it (``POST /kinject/adapters``); others are told how to start with it."""
    import httpx

    base = endpoint.rstrip("/")
    try:
        listed = httpx.get(f"{base}/v1/models", headers=auth_headers(), timeout=30)
        if listed.status_code == 200 and model in {m.get("id") for m in listed.json().get("data", [])}:
            return
        added = httpx.post(
            f"{base}/kinject/adapters", json={"name": model, "path": model}, headers=auth_headers(), timeout=600
        )
    except httpx.HTTPError as exc:
        raise ChatClientError(f"{endpoint}: {type(exc).__name__}: {exc}") from None
    if added.status_code == 201:
        return
    if added.status_code in (404, 405):
        raise ChatClientError(
            f"{endpoint} does not serve the Hub adapter {model} and cannot load one at run time: start TGI with "
            f"--lora-adapters {model}, or vLLM with --enable-lora --lora-modules {model}={model}"
        )
    raise ChatClientError(f"{endpoint}: could not load {model}: {_client_message(_Failed(added))}")


class _Failed(Exception):
    def __init__(self, response: Any) -> None:
        self.response = response


def _client_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
            return f"{response.status_code}: {body.get('error') or body}"
        except Exception:  # noqa: BLE001
            return f"{response.status_code}: {response.text[:300]}"
    return f"{type(exc).__name__}: {exc}"
