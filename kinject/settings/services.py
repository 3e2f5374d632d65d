"""The settings that are not a run's: serving a model (serve), asking a server (chat), publishing an adapter
(push), exporting the merged model for llama.cpp and Ollama (export), and serving the web app (the operator's launch
settings, from flags or the environment).

Declared like the stages of ``kinject.settings.stages`` (documented fields, validated on construction), from which the
CLI's options and the app's launch flags are generated; none of them is written into a run's ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal

from .declare import ConfigError, check_choice, check_networks, require, setting
from .fields import describe_fields
from .sources import FetchConfig


@dataclass
class ServeConfig:
    """The embedded server speaking TGI's protocol (verb: serve); the base model is the ``model`` section."""

    _argument_group_name = "serve"

    adapters: list[str] = setting(
        [],
        "Adapters to serve beside the base, as NAME=RUN_DIR (a kinject run, a folder with adapter_config.json, or "
        "a Hub adapter OWNER/NAME[@revision]); "
        "a request names one by adapter_id (/generate) or model (/v1/chat/completions).",
        aliases=["--adapter"],
        metavar="NAME=PATH",
    )
    merged: list[str] = setting(
        [], "Merged models to serve as models of their own, as NAME=DIR (kinject merge's output).", metavar="NAME=DIR"
    )
    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0 to serve other machines).")
    port: int = setting(8080, "Port to listen on.")
    max_concurrent_requests: int = setting(
        16, "Requests queued or running at once; beyond that a request is refused at once (429, TGI's overload error)."
    )
    max_batch_size: int = setting(
        8,
        "Requests one model generates together: a request joins the running batch at the next step and leaves it "
        "when it ends; the others in the queue wait for a place.",
    )
    max_total_tokens: int | None = setting(
        None, "Most prompt plus generated tokens per request (default: the model's context length)."
    )
    max_body_bytes: int = setting(
        2_000_000, "Largest request body, in bytes; a bigger one is refused (413) before it is read or tokenized."
    )
    adapter_root: str | None = setting(
        None,
        "The only folder under which POST /kinject/adapters may load a local adapter, links resolved (default: "
        "$KINJECT_RUNS, else ./runs; 'none': no local folder). Adapters given at launch may lie anywhere.",
    )
    hub_adapters: bool = setting(
        True,
        "Whether POST /kinject/adapters may download public Hub adapters (always anonymously: the operator's "
        "HF_TOKEN is never used for a client's request).",
    )

    def __post_init__(self) -> None:
        require(1 <= self.port <= 65535, "port", f"must be within 1-65535, got {self.port}")
        require(self.max_body_bytes >= 1024, "max_body_bytes", f"must be >= 1024, got {self.max_body_bytes}")
        require(self.max_concurrent_requests >= 1, "max_concurrent_requests", "must be >= 1")
        require(self.max_batch_size >= 1, "max_batch_size", "must be >= 1")
        require(self.max_total_tokens is None or self.max_total_tokens >= 2, "max_total_tokens", "must be >= 2")
        for item in self.adapters + self.merged:
            name, sep, path = item.partition("=")
            require(bool(sep and name and path), "adapters", f"{item!r}: use NAME=PATH")


@dataclass
class ChatConfig:
    """One chat message to a TGI-protocol server (verb: chat): kinject's own, TGI, vLLM or SGLang."""

    _argument_group_name = "chat"

    endpoint: str = setting(
        "http://127.0.0.1:8080",
        "The server's base URL (the KINJECT_ENDPOINT environment variable, when set, replaces this default).",
    )
    model: str | None = setting(
        None, "The adapter or model to ask, by the name the server knows it (default: the base)."
    )
    system: str | None = setting(None, "A system message to put before the user's.")

    def __post_init__(self) -> None:
        require(
            self.endpoint.startswith(("http://", "https://")),
            "endpoint",
            f"must be an http(s) URL, got {self.endpoint!r}",
        )


# The fetch settings that decide which addresses the server may reach: in the app, the operator's (AppConfig).
OPERATOR_FETCH_FIELDS = ("allow_private_urls", "allowed_networks")
# Fetch limits a web user may lower but not raise above the defaults (AppConfig.fetch_policy).
_FETCH_LIMITS = ("timeout_s", "total_timeout_s", "max_bytes", "max_file_bytes", "max_concurrency", "max_redirects")
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass
class AppConfig:
    """How the web app is served (`python app.py`): the operator's settings at launch, never a web user's.

    Each field is a launch flag of app.py (``--allow-private-urls``) and an environment variable named after it
    (``KINJECT_ALLOW_PRIVATE_URLS``; lists comma-separated); a flag given wins over the variable. These settings
    are not part of a run's config.yaml: they belong to the server, not to a run.
    """

    _argument_group_name = "app"

    host: str = setting("127.0.0.1", "Address to listen on; off loopback the app requires KINJECT_AUTH.")
    port: int = setting(7860, "Port to listen on.")
    allow_private_urls: bool = setting(
        False,
        "Let the app fetch URLs that resolve to loopback, private, link-local, multicast or reserved addresses "
        "(an intranet, or tests on 127.0.0.1). Web users cannot change it; the Prepare tab shows it.",
    )
    allowed_networks: list[str] = setting(
        [],
        "Address ranges (CIDR) the app may fetch even when private, e.g. an intranet wiki at 10.1.2.0/24.",
        metavar="CIDR",
    )
    max_upload_bytes: int = setting(
        5_000_000, "Largest file a web user may upload, in bytes; a bigger upload is refused before it is stored."
    )
    trusted_proxies: list[str] = setting(
        [],
        "Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client: the login limit then "
        "counts the client's address, not the proxy's. None by default: the header is ignored and the limit counts "
        "the connecting address (behind a proxy, everyone's; name the proxy here).",
        metavar="CIDR",
    )
    push_with_server_token: bool = setting(
        False,
        "Let the Publish tab push with the server's HF_TOKEN when a web user leaves the token field empty (anyone "
        "who can reach the app then pushes as the token's owner); off: every push needs the user's own token.",
    )

    def __post_init__(self) -> None:
        require(bool(self.host and self.host.strip()), "host", "must not be empty")
        require(1 <= self.port <= 65535, "port", f"must be within 1-65535, got {self.port}")
        require(self.max_upload_bytes > 0, "max_upload_bytes", f"must be > 0, got {self.max_upload_bytes}")
        check_networks("allowed_networks", self.allowed_networks)
        check_networks("trusted_proxies", self.trusted_proxies)

    @staticmethod
    def env_name(field_name: str) -> str:
        """The environment variable of a field: ``port`` -> ``KINJECT_PORT``."""
        return "KINJECT_" + field_name.upper()

    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str]) -> AppConfig:
        """The settings the environment gives (unset or blank variables keep the default); a malformed value
        raises ConfigError naming its variable, so the app stops with a message instead of a traceback."""
        values: dict[str, Any] = {}
        for info in describe_fields(cls):
            name, raw = cls.env_name(info.name), (environ.get(cls.env_name(info.name)) or "").strip()
            if not raw:
                continue
            if info.kind == "int":
                if not raw.lstrip("+-").isdigit():
                    raise ConfigError(f"{name}: {raw!r} is not a whole number")
                values[info.name] = int(raw)
            elif info.kind == "bool":
                if raw.lower() not in _YES + _NO:
                    raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(_YES + _NO)}")
                values[info.name] = raw.lower() in _YES
            elif info.kind == "list":
                values[info.name] = [item.strip() for item in raw.split(",") if item.strip()]
            else:
                values[info.name] = raw
        try:
            return cls(**values)
        except ConfigError as exc:
            field_name = str(exc).split(":", 1)[0]
            if field_name in values:
                raise ConfigError(f"{cls.env_name(field_name)}{str(exc)[len(field_name) :]}") from None
            raise

    def fetch_policy(self, fetch: FetchConfig) -> FetchConfig:
        """``fetch`` with the operator's choice of reachable addresses, and its limits capped at the defaults (at
        ``max_upload_bytes`` for files): a web user may fetch less, slower or fewer, never more or longer."""
        caps = FetchConfig(max_file_bytes=self.max_upload_bytes)
        capped = {name: min(getattr(fetch, name), getattr(caps, name)) for name in _FETCH_LIMITS}
        return dataclasses.replace(
            fetch, allow_private_urls=self.allow_private_urls, allowed_networks=list(self.allowed_networks), **capped
        )


@dataclass
class PublishConfig:
    """Pushing a run's adapter and its model card to the Hugging Face Hub (verb: push). The token is never a
    setting: it comes from the app's Token field or ``HF_TOKEN`` and is held in memory only."""

    _argument_group_name = "publish"

    repo: str = setting(
        "", "The Hub repository to push to, as OWNER/NAME (created when it does not exist).", metavar="OWNER/NAME"
    )
    public: bool = setting(
        False, "Create the repository public; by default it is created private (an existing one keeps its visibility)."
    )
    merged: bool = setting(
        False,
        "Also upload the merged 16-bit model (the run's merged/, from `kinject merge`) into the "
        "repository's merged/ folder.",
    )
    revision: str | None = setting(
        None, "The branch to commit to, created from main when missing (default: main).", metavar="BRANCH"
    )
    message: str | None = setting(None, "The commit message (default: names the run, its step and how many sources).")
    retries: int = setting(
        4, "Retries after a Hub server error (5xx) or a network failure, each after a doubling wait."
    )
    backoff_s: float = setting(1.0, "Seconds before the first retry (then 2x, 4x, ...).")

    def __post_init__(self) -> None:
        require(
            not self.repo or re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", self.repo) is not None,
            "repo",
            f"must be OWNER/NAME (letters, digits, '-', '_', '.'), got {self.repo!r}",
        )
        require(self.retries >= 0, "retries", f"must be >= 0, got {self.retries}")
        require(self.backoff_s >= 0, "backoff_s", f"must be >= 0, got {self.backoff_s}")
        require(
            self.revision is None or re.fullmatch(r"[\w./-]+", self.revision) is not None,
            "revision",
            f"must be a branch name, got {self.revision!r}",
        )


ExportFormat = Literal["gguf"]
ExportWhat = Literal["merged", "lora", "both"]
GGUF_TYPES = ("f16", "q8_0")  # what kinject.sharing.gguf_model writes


@dataclass
class ExportConfig:
    """Writing a run's model for llama.cpp and Ollama: merged (the adapter folded into its base), or the LoRA adapter
    as its own GGUF file over the base's (verb: export)."""

    _argument_group_name = "export"

    format: ExportFormat = setting("gguf", "The file format: gguf (llama.cpp, Ollama, LM Studio).")
    what: ExportWhat = setting(
        "merged",
        "What to write: merged (one model with the adapter folded in, model-TYPE.gguf), lora (the adapter alone as "
        "adapter.gguf for llama.cpp's --lora and Ollama's ADAPTER, over the base model's GGUF: the bundled model's "
        "own file, else base-TYPE.gguf) or both.",
    )
    types: list[str] = setting(
        ["q8_0"],
        "The GGUF tensor types to write, one file each: q8_0 (8-bit, about half the size of f16, answers nearly "
        "the same) or f16, for the merged model and a base written for the adapter; the Modelfiles use the first.",
        aliases=["--type"],
        metavar="TYPE",
    )
    name: str | None = setting(
        None,
        "The model's name: in the GGUF file's metadata, the Modelfile and the `ollama create` command printed "
        "(default: the run folder's name).",
    )

    def __post_init__(self) -> None:
        check_choice(self.format, "format", ExportFormat)
        check_choice(self.what, "what", ExportWhat)
        require(bool(self.types), "types", "give at least one type")
        for qtype in self.types:
            require(qtype in GGUF_TYPES, "types", f"must be among {', '.join(GGUF_TYPES)}, got {qtype!r}")
        require(len(set(self.types)) == len(self.types), "types", f"each type once, got {self.types}")
