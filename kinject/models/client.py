"""The one client for TGI-protocol servers (kinject's own, TGI, vLLM, SGLang): chat through huggingface_hub's
``InferenceClient``, the models a server lists, and adapters loaded into a server while it runs.

The client never sends the operator's ``HF_TOKEN`` to a server: ``InferenceClient`` would, for any URL, when no key
is given. It sends ``$KINJECT_API_KEY`` (the key ``kinject serve`` asks for off loopback), else a placeholder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..runtime.errors import KinjectError
from ..settings.services import ChatConfig
from ..settings.stages import GenerationConfig
from .hub import parse_hub_id

NO_KEY = "no-key"  # sent where there is no key, so InferenceClient does not fall back on the HF token


def api_key() -> str:
    """The key to send to a TGI-protocol server: ``$KINJECT_API_KEY``, else a placeholder (never the HF token)."""
    return os.environ.get("KINJECT_API_KEY") or NO_KEY


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key()}"}


class ChatClientError(KinjectError, RuntimeError):
    """The server could not be reached or refused the request; the message says which and why."""


class ServerClient:
    """One TGI/OpenAI-compatible server at ``endpoint``: chat, the models it lists, adapters loaded at run time."""

    def __init__(self, endpoint: str, timeout_s: float = 600):
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s

    def chat(
        self,
        messages: list[dict[str, str]],
        model: str | None = None,
        generation: GenerationConfig | None = None,
        stream: bool = True,
    ) -> Iterator[str]:
        """The answer to a conversation (piece by piece when streaming). ``model``: the adapter or model to ask
        (None: the base, TGI's "tgi"); a Hub adapter the server does not list is loaded first where it can be.
        The generation settings go as the request's (temperature at or below 0.05 as 0, greedy, as kinject
        decodes)."""
        gen = generation or GenerationConfig()
        if model and parse_hub_id(model) is not None:
            self.ensure_hub_adapter(model)
        client = self._inference()  # held while the answer streams: collecting it closes the stream
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
            raise ChatClientError(f"{self.endpoint}: {_client_message(exc)}") from None

    def reply(
        self,
        messages: list[dict[str, str]],
        model: str | None = None,
        max_tokens: int = GenerationConfig.max_new_tokens,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> str:
        """One answer, not streamed, with the request's own settings: a seed per request, no ``top_p`` (the
        server's default), temperature 0 greedy on TGI, vLLM and OpenAI alike. ``model`` goes as it is (None:
        huggingface_hub's placeholder, which a TGI-protocol server answers with its base)."""
        try:
            out = self._inference().chat_completion(
                messages, model=model, max_tokens=max_tokens, temperature=max(temperature, 0.0), seed=seed
            )
        except Exception as exc:  # noqa: BLE001 - connection errors, HTTP errors with the server's message
            raise ChatClientError(f"{self.endpoint}: {_client_message(exc)}") from None
        return out.choices[0].message.content or ""

    def _inference(self) -> Any:
        """huggingface_hub's client for this server, with the server's key (never the HF token)."""
        from huggingface_hub import InferenceClient

        return InferenceClient(base_url=self.endpoint, api_key=api_key(), timeout=self.timeout_s)

    def models(self, timeout_s: float = 30) -> list[str]:
        """The model names the server lists (``/v1/models``)."""
        import httpx

        try:
            response = httpx.get(f"{self.endpoint}/v1/models", headers=auth_headers(), timeout=timeout_s)
            response.raise_for_status()
            return [m.get("id") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise ChatClientError(f"{self.endpoint} does not answer /v1/models: {exc}") from None

    def load_adapter(self, name: str, path: str | Path) -> bool:
        """Load an adapter into the server while it runs, where it can: ``kinject serve``'s ``/kinject/adapters``,
        then vLLM's ``/v1/load_lora_adapter`` (with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``). Whether one took
        it."""
        import httpx

        attempts = [
            ("/kinject/adapters", {"name": name, "path": str(path)}),
            ("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}),
        ]
        for route, body in attempts:
            try:
                response = httpx.post(self.endpoint + route, json=body, headers=auth_headers(), timeout=self.timeout_s)
            except httpx.HTTPError:
                continue
            if response.status_code < 300:
                return True
        return False

    def ensure_hub_adapter(self, model: str) -> None:
        """Make a Hub adapter ``model`` known to the server: nothing when it lists it already; a kinject server
        downloads it (``POST /kinject/adapters``); others are told how to start with it."""
        import httpx

        headers = auth_headers()
        try:
            listed = httpx.get(f"{self.endpoint}/v1/models", headers=headers, timeout=30)
            if listed.status_code == 200 and model in {m.get("id") for m in listed.json().get("data", [])}:
                return
            added = httpx.post(
                f"{self.endpoint}/kinject/adapters",
                json={"name": model, "path": model},
                headers=headers,
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise ChatClientError(f"{self.endpoint}: {type(exc).__name__}: {exc}") from None
        if added.status_code == 201:
            return
        if added.status_code in (404, 405):
            raise ChatClientError(
                f"{self.endpoint} does not serve the Hub adapter {model} and cannot load one at run time: start TGI "
                f"with --lora-adapters {model}, or vLLM with --enable-lora --lora-modules {model}={model}"
            )
        raise ChatClientError(f"{self.endpoint}: could not load {model}: {_client_message(_Failed(added))}")


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
    """Send a conversation to the TGI-protocol server at ``endpoint`` (see ``ServerClient.chat``); yields the
    answer, piece by piece when streaming."""
    return ServerClient(endpoint).chat(messages, model, generation, stream)


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
