"""Login hardening: weak $KINJECT_AUTH passwords refuse to start, and repeated failed logins lock the user name and
the client address out (unit tests with a fake clock, then through gradio's real /login route)."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import HTTPException

from kinject.config import ConfigError
from kinject.web.auth import LoginLimiter, auth_for, auth_launch_kwargs, parse_auth

GOOD = [("me", "long-secret"), ("you", "correct horse battery")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> LoginLimiter:
    return LoginLimiter(GOOD, clock=clock)


# --------------------------------------------------------------------------------------- weak passwords refused


def _without(message: str, why: str) -> str:
    """The message less its own words, which may contain a weak password's text ("a common password")."""
    return message.replace("the password of", "").replace(why, "")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("u:12345678", "only digits"),
        ("u:20240101", "only digits"),
        ("u:aaaaaaaa", "a repeated pattern"),
        ("u:abababab", "a repeated pattern"),
        ("u:abcdefgh", "a keyboard or alphabet run"),
        ("u:HGFEDCBA", "a keyboard or alphabet run"),
        ("u:qwertyuiop", "a keyboard or alphabet run"),
        ("u:asdfghjk", "a keyboard or alphabet run"),
        ("administrator:Administrator", "the user name"),
        ("admin:admin2024!", "the user name"),
        ("u:password", "a common password"),
        ("u:Password1!", "a common password"),
        ("u:letmein123", "a common password"),
        ("u:P@ssw0rd", "a common password"),
        ("me:long-secret,bob:iloveyou", "a common password"),
    ],
)
def test_weak_passwords_refuse_to_start(monkeypatch, value, why):
    user, password = value.split(",")[-1].split(":", 1)
    with pytest.raises(ConfigError, match=f"the password of '{user}' is {why}") as info:
        parse_auth(value)
    assert password not in _without(str(info.value), why)  # the password itself is never shown
    monkeypatch.setenv("KINJECT_AUTH", value)
    for host in ("0.0.0.0", "127.0.0.1"):
        with pytest.raises(SystemExit, match=why) as info:
            auth_for(host)
        assert password not in _without(str(info.value), why)


@pytest.mark.parametrize(
    "value",
    ["me:long-secret", "me:long-enough", "you:a:b:c:d:e:f:g", "ops:correct horse battery", "u:9xq-2v!Lm"],
)
def test_reasonable_passwords_are_accepted(value):
    user, password = value.split(":", 1)
    assert parse_auth(value) == [(user, password)]


def test_short_passwords_keep_their_message():
    with pytest.raises(ConfigError, match="the password of 'admin' is 5 characters; use at least 8"):
        parse_auth("admin:short")


# ------------------------------------------------------------------------------------------- the login limiter


def test_five_failures_lock_the_user_even_against_the_right_password(limiter, clock, caplog):
    caplog.set_level(logging.WARNING, logger="kinject.app")
    assert limiter.check("me", "long-secret", "10.0.0.1")  # works, and a success clears nothing bad
    for attempt in range(5):
        assert not limiter.check("me", f"guess-{attempt}", "10.0.0.2")
    assert limiter.locked_for("me") == pytest.approx(60)
    assert not limiter.check("me", "long-secret", "10.0.0.3")  # right password, other address: still locked
    assert limiter.check("you", "correct horse battery", "10.0.0.3")  # other users are unaffected
    clock.advance(59)
    assert not limiter.check("me", "long-secret", "10.0.0.3")
    clock.advance(2)
    assert limiter.check("me", "long-secret", "10.0.0.3")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # one warning per lockout; refused attempts during it log nothing
    assert "user 'me' for 60 s" in lines[0] and "address '10.0.0.2' for 60 s" in lines[0]
    assert "guess" not in caplog.text and "long-secret" not in caplog.text


def test_many_user_names_from_one_address_lock_the_address(limiter):
    for number in range(5):
        assert not limiter.check(f"user{number}", "whatever-password", "203.0.113.9")
    assert not limiter.check("me", "long-secret", "203.0.113.9")  # the address is locked, for every name
    assert limiter.check("me", "long-secret", "198.51.100.1")


def test_failures_slide_out_of_the_window(limiter, clock):
    for _ in range(4):
        assert not limiter.check("me", "nope-nope", "10.0.0.1")
    clock.advance(301)
    for _ in range(4):
        assert not limiter.check("me", "nope-nope", "10.0.0.1")
    assert limiter.locked_for("me", "10.0.0.1") == 0
    assert limiter.check("me", "long-secret", "10.0.0.1")


def test_a_success_resets_the_count(limiter):
    for _ in range(4):
        limiter.check("me", "nope-nope")
    assert limiter.check("me", "long-secret")
    for _ in range(4):
        limiter.check("me", "nope-nope")
    assert limiter.locked_for("me") == 0


def test_the_lockout_grows_up_to_fifteen_minutes_and_resets_after_a_quiet_spell(limiter, clock):
    seen = []
    for _ in range(7):
        for _ in range(5):
            limiter.check("me", "nope-nope")
        seen.append(round(limiter.locked_for("me")))
        clock.advance(seen[-1])
    assert seen == [60, 120, 240, 480, 900, 900, 900]
    clock.advance(901)
    for _ in range(5):
        limiter.check("me", "nope-nope")
    assert round(limiter.locked_for("me")) == 60


def test_unknown_users_odd_passwords_and_many_names(limiter, monkeypatch):
    assert not limiter.check("nobody", "long-secret")
    assert not limiter.check("me", "lông-sécret ✓")  # non-ASCII: compared as bytes, no TypeError
    assert not limiter.check("me", "")
    monkeypatch.setattr(limiter, "MAX_TRACKED", 50)
    for number in range(500):
        limiter.check(f"name{number}", "x", f"10.1.{number // 250}.{number % 250}")
    assert len(limiter._state) <= 50


def test_the_gradio_callable_answers_429_while_locked(limiter):
    for _ in range(5):
        assert limiter("me", "nope-nope") is False
    with pytest.raises(HTTPException) as info:
        limiter("me", "long-secret")
    assert info.value.status_code == 429 and info.value.headers["Retry-After"] == "60"


# ------------------------------------------------------------------------------- through gradio's /login route


def test_real_login_route_locks_out_and_recovers(clock):
    import gradio as gr

    with gr.Blocks() as demo:
        gr.Markdown("hello")
    kwargs = auth_launch_kwargs([("me", "long-secret")], clock=clock)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, **kwargs)
    try:
        with httpx.Client(base_url=demo.local_url, timeout=10) as http:

            def login(user: str, password: str) -> httpx.Response:
                return http.post("/login", data={"username": user, "password": password})

            assert login("me", "long-secret").status_code == 200
            codes = [login("me", f"wrong-{n}").status_code for n in range(30)]
            assert codes[:5] == [400] * 5 and set(codes[5:]) == {429}
            refused = login("me", "long-secret")
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 60
            assert "access-token" not in refused.headers.get("set-cookie", "")
            clock.advance(61)
            assert login("me", "long-secret").status_code == 200
            # The middleware tells the limiter the client's address: other names from 127.0.0.1 lock it for "me" too.
            codes = [login(f"bot{n}", "wrong-password").status_code for n in range(6)]
            assert codes == [400] * 5 + [429]
            assert login("me", "long-secret").status_code == 429
    finally:
        demo.close()
