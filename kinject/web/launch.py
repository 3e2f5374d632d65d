"""Starting the web face: the operator's settings (KINJECT_* variables, then flags), auth, the runs folder, launch."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from kinject.runtime.errors import describe_os_error
from kinject.settings.fields import describe_fields
from kinject.settings.services import AppConfig
from kinject.settings.stages import ConfigError

from . import state
from .auth import auth_for, auth_launch_kwargs, forwarded_allow_ips
from .layout import build_ui


def launch_config(argv: list[str] | None = None) -> AppConfig:
    """The operator's settings: the KINJECT_* environment, then the flags given (generated from ``AppConfig``).

    Raises ConfigError for a malformed value (``KINJECT_PORT=abc``), naming the variable or flag."""
    from_env = AppConfig.from_env(os.environ)
    parser = argparse.ArgumentParser(description="kinject web app (the operator's settings; web users change none)")
    for info in describe_fields(AppConfig):
        text = f"{info.help} (environment: {AppConfig.env_name(info.name)}; now: {getattr(from_env, info.name)})"
        if info.kind == "bool":
            parser.add_argument(info.option, action="store_true", default=None, help=text)
        elif info.kind == "list":
            parser.add_argument(info.option, nargs="+", default=None, metavar="CIDR", help=text)
        else:
            parser.add_argument(info.option, type=int if info.kind == "int" else str, default=None, help=text)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return replace(from_env, **given)


def main(argv: list[str] | None = None) -> None:
    """``python app.py``: check the operator's settings and credentials, then serve the app until stopped."""
    try:
        operator = launch_config(argv)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    creds = auth_for(operator.host)
    try:
        state.RUNS_ROOT.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        sys.exit(f"error: cannot create the runs folder {state.RUNS_ROOT} (KINJECT_RUNS): {describe_os_error(exc)}")
    if operator.allow_private_urls or operator.allowed_networks:
        allowed = "all private addresses" if operator.allow_private_urls else ", ".join(operator.allowed_networks)
        print(f"note: this server may fetch {allowed} (operator setting)", file=sys.stderr)
    serve_app(build_ui(operator).queue(default_concurrency_limit=2), operator, creds)


def serve_app(demo: Any, operator: AppConfig, creds: list[tuple[str, str]] | None, **launch: Any) -> None:
    """Launch ``demo`` as the operator set it, behind the login limit when there are ``creds``. uvicorn believes
    X-Forwarded-For only from the operator's ``trusted_proxies`` (it reads FORWARDED_ALLOW_IPS as it starts; its
    default, loopback, would let a client name its own address to the login limit). ``launch`` adds to or replaces
    ``demo.launch``'s arguments (a test's port, ``prevent_thread_lock``, the limiter's clock as ``limits``)."""
    trusted = forwarded_allow_ips(operator.trusted_proxies)
    if os.environ.get("FORWARDED_ALLOW_IPS", trusted) != trusted:
        print(f"note: KINJECT_TRUSTED_PROXIES ({trusted or 'none'}) replaces FORWARDED_ALLOW_IPS", file=sys.stderr)
    os.environ["FORWARDED_ALLOW_IPS"] = trusted
    kwargs = {
        "server_name": operator.host,
        "server_port": operator.port,
        **auth_launch_kwargs(creds, **launch.pop("limits", {})),
        "show_error": True,
        "max_file_size": operator.max_upload_bytes,
    }
    demo.launch(**{**kwargs, **launch})
