"""The operator's launch settings of the app (``kinject.web.launch``, ``kinject.settings.services.AppConfig``): flags
and KINJECT_* variables, a malformed one stops the app with a message, and the operator alone decides what the server
may fetch."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinject.settings.services import AppConfig
from kinject.settings.sources import FetchConfig
from kinject.settings.stages import ConfigError


def test_the_operator_sets_the_fetch_policy_at_launch(monkeypatch):
    from kinject.web.launch import launch_config
    from kinject.web.views import fetch_policy_text

    asked = FetchConfig(allow_private_urls=True, allowed_networks=["0.0.0.0/0"])  # what a form might send
    assert AppConfig().fetch_policy(asked) == FetchConfig()
    monkeypatch.setenv("KINJECT_ALLOWED_NETWORKS", "10.1.2.0/24, 192.168.0.0/16")
    operator = launch_config([])
    assert operator.fetch_policy(FetchConfig()).allowed_networks == ["10.1.2.0/24", "192.168.0.0/16"]
    assert not operator.allow_private_urls
    assert "except 10.1.2.0/24, 192.168.0.0/16" in fetch_policy_text(operator)
    monkeypatch.setenv("KINJECT_ALLOW_PRIVATE_URLS", "1")
    assert launch_config([]).allow_private_urls
    monkeypatch.delenv("KINJECT_ALLOW_PRIVATE_URLS")
    assert launch_config(["--allow-private-urls", "--port", "8000"]).fetch_policy(FetchConfig()).allow_private_urls
    assert "allowed** by the operator" in fetch_policy_text(AppConfig(allow_private_urls=True))


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KINJECT_PORT", "abc", "error: KINJECT_PORT: 'abc' is not a whole number"),
        ("KINJECT_PORT", "70000", "error: KINJECT_PORT: must be within 1-65535, got 70000"),
        ("KINJECT_ALLOW_PRIVATE_URLS", "maybe", "error: KINJECT_ALLOW_PRIVATE_URLS: 'maybe' is not one of"),
        ("KINJECT_ALLOWED_NETWORKS", "10.0.0.0/8,intranet", "error: KINJECT_ALLOWED_NETWORKS: 'intranet' is not a"),
    ],
)
def test_a_bad_environment_value_stops_the_app_with_a_message(monkeypatch, variable, value, message):
    from kinject.web.launch import main as app_main

    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as info:
        app_main([])
    assert str(info.value).startswith(message)
    with pytest.raises(ConfigError):
        AppConfig.from_env({variable: value})


def test_the_security_page_names_what_the_operator_controls():
    security = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    for name in (
        "KINJECT_ALLOW_PRIVATE_URLS",
        "KINJECT_ALLOWED_NETWORKS",
        "KINJECT_AUTH",
        "8 characters",
        "--allow-private-urls",
        "max_file_bytes",
        "KINJECT_MAX_UPLOAD_BYTES",
    ):
        assert name in security, name
