"""Login hardening: weak $KINJECT_AUTH passwords refuse to start, and repeated failed logins lock the user name and
the client address out (unit tests with a fake clock, then through gradio's real /login route)."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import HTTPException

from kinject.settings.services import AppConfig
from kinject.settings.stages import ConfigError
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


def test_five_failures_lock_the_address_and_the_name_from_it_even_against_the_right_password(limiter, clock, caplog):
    caplog.set_level(logging.WARNING, logger="kinject.app")
    assert limiter.check("me", "long-secret", "10.0.0.1")  # works, and a success clears nothing bad
    for attempt in range(5):
        assert not limiter.check("me", f"guess-{attempt}", "10.0.0.2")
    assert limiter.locked_for("me", "10.0.0.2") == pytest.approx(60)
    assert not limiter.check("me", "long-secret", "10.0.0.2")  # right password, same address: still locked
    assert not limiter.check("you", "correct horse battery", "10.0.0.2")  # the address is locked for every name
    assert limiter.check("you", "correct horse battery", "10.0.0.3")  # other addresses are unaffected
    clock.advance(59)
    assert not limiter.check("me", "long-secret", "10.0.0.2")
    clock.advance(2)
    assert limiter.check("me", "long-secret", "10.0.0.2")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # one warning per lockout; refused attempts during it log nothing
    assert "user 'me' from '10.0.0.2' for 60 s" in lines[0] and "address '10.0.0.2' for 60 s" in lines[0]
    assert "guess" not in caplog.text and "long-secret" not in caplog.text


def test_a_user_locked_out_by_someone_else_logs_in_from_an_address_that_has_not_failed(limiter, clock):
    """Whoever knows a user name can lock only themselves out: the lockouts they earn (doubling up to 15 minutes)
    hold against their address, while the user logs in at once from theirs: a lock on the name would lock out
    everyone who uses it."""
    for _ in range(3):
        for attempt in range(5):
            assert not limiter.check("me", f"guess-{attempt}", "203.0.113.66")
        clock.advance(limiter.locked_for("me", "203.0.113.66") - 1)
    assert limiter.locked_for("me", "203.0.113.66") == pytest.approx(1)  # the attacker's third lockout, 240 s
    assert limiter.locked_for("me", "198.51.100.7") == 0
    assert limiter.check("me", "long-secret", "198.51.100.7")  # the legitimate user, from a fresh address
    assert not limiter.check("me", "long-secret", "203.0.113.66")  # the attacker's address guesses nothing more


def test_an_ipv6_client_is_counted_by_its_64_block(limiter):
    """A client with an IPv6 /64 can use any of its addresses: five failures from five of them lock the block."""
    for number in range(5):
        assert not limiter.check(f"bot{number}", "wrong-password", f"2001:db8:1:2::{number + 1}")
    assert not limiter.check("me", "long-secret", "2001:db8:1:2:ffff::9")
    assert limiter.check("me", "long-secret", "2001:db8:1:3::1")  # another block
    assert limiter.check("me", "long-secret", "::ffff:192.0.2.1")  # IPv4-mapped: counted as 192.0.2.1


def test_invented_names_never_flush_a_lock(limiter):
    """5,001 failures under new names from new addresses fill the table past its 10,000 keys: the unlocked keys go,
    the lock stays (dropping the oldest keys, locked ones included, would let the locked password in again)."""
    for attempt in range(5):
        assert not limiter.check("me", f"guess-{attempt}", "203.0.113.66")
    for number in range(5_001):
        limiter.check(f"name{number}", "wrong-password", f"10.{number // 65536}.{number // 256 % 256}.{number % 256}")
    assert not limiter.check("me", "long-secret", "203.0.113.66")
    assert limiter.locked_for("me", "203.0.113.66") > 0 and len(limiter._state) <= LoginLimiter.MAX_TRACKED


def test_when_locks_fill_the_table_a_new_address_waits_for_the_first_to_end(limiter, clock, monkeypatch, caplog):
    """A table full of locked keys forgets none of them: an attempt that needs a new key is refused unchecked
    (429 with the wait) until the first lock ends, so no guess goes uncounted; then the user logs in."""
    caplog.set_level(logging.WARNING, logger="kinject.app")
    monkeypatch.setattr(limiter, "MAX_TRACKED", 10)
    for number in range(5):  # five addresses, each locked with its one name: ten locked keys
        for _ in range(5):
            assert not limiter.check(f"bot{number}", "wrong-password", f"203.0.113.{number}")
    clock.advance(30)
    with pytest.raises(HTTPException) as info:
        _call_from(limiter, "198.51.100.7", "me", "long-secret")
    assert info.value.status_code == 429 and info.value.headers["Retry-After"] == "30"
    assert not limiter.check("me", "long-secret", "198.51.100.7")
    assert all(limiter.locked_for(f"bot{n}", f"203.0.113.{n}") > 0 for n in range(5))  # every lock holds
    assert "new ones are refused until one ends" in caplog.text
    clock.advance(31)
    assert limiter.check("me", "long-secret", "198.51.100.7")


def _call_from(limiter: LoginLimiter, client: str, username: str, password: str) -> bool:
    """The gradio callable, as the middleware calls it for a request from ``client``."""
    from kinject.web import auth

    token = auth._CLIENT_ADDRESS.set(client)
    try:
        return limiter(username, password)
    finally:
        auth._CLIENT_ADDRESS.reset(token)


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


def _serve(monkeypatch, operator: AppConfig):
    """A one-line app served as ``python app.py`` serves it (``serve_app``), with a login for "me"."""
    import gradio as gr

    from kinject.web.launch import serve_app

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")  # uvicorn's default, as a bare environment gives it
    with gr.Blocks() as demo:
        gr.Markdown("hello")
    serve_app(demo, operator, [("me", "long-secret")], server_port=None, prevent_thread_lock=True, quiet=True)
    return demo


def _login_as(http: httpx.Client, user: str, password: str, claimed: str) -> int:
    """A login claiming to come from ``claimed`` (X-Forwarded-For, as a proxy would add it); its status code."""
    data = {"username": user, "password": password}
    return http.post("/login", data=data, headers={"X-Forwarded-For": claimed}).status_code


def test_a_claimed_client_address_does_not_dodge_the_login_limit(monkeypatch):
    """Unless the operator names a trusted proxy, the limit counts the connection's own address: five failures under
    five claimed addresses lock it, and a new claim does not unlock it (believed from loopback, as uvicorn would,
    each failure would count for a different address and the lock would never come)."""
    demo = _serve(monkeypatch, AppConfig())
    try:
        with httpx.Client(base_url=demo.local_url, timeout=10) as http:
            codes = [_login_as(http, f"bot{n}", "wrong-password", f"198.51.100.{n}") for n in range(6)]
            assert codes == [400] * 5 + [429]
            assert _login_as(http, "me", "long-secret", "192.0.2.200") == 429
    finally:
        demo.close()


def test_behind_a_trusted_proxy_each_client_is_counted_and_the_user_still_logs_in(monkeypatch):
    """With the proxy named (KINJECT_TRUSTED_PROXIES), the address it forwards is counted: an attacker who knows the
    name locks only their own address out, and the user logs in through the same proxy from theirs."""
    demo = _serve(monkeypatch, AppConfig(trusted_proxies=["127.0.0.1", "::1"]))
    try:
        with httpx.Client(base_url=demo.local_url, timeout=10) as http:
            codes = [_login_as(http, "me", f"guess-{n}", "203.0.113.66") for n in range(6)]
            assert codes == [400] * 5 + [429]
            assert _login_as(http, "me", "long-secret", "198.51.100.7") == 200
            assert _login_as(http, "me", "long-secret", "203.0.113.66") == 429
    finally:
        demo.close()


def test_trusted_proxies_are_an_operator_setting():
    env = {"KINJECT_TRUSTED_PROXIES": "10.0.0.5, 172.16.0.0/12"}
    assert AppConfig.from_env(env).trusted_proxies == ["10.0.0.5", "172.16.0.0/12"]
    with pytest.raises(ConfigError, match=r"^KINJECT_TRUSTED_PROXIES: '\*' is not a CIDR range"):
        AppConfig.from_env({"KINJECT_TRUSTED_PROXIES": "*"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (":", "entry 1 has an empty user name"),
        ("admin:", "the password of 'admin' is empty"),
        ("admin:short", "the password of 'admin' is 5 characters; use at least 8"),
        ("admin", "entry 1 has no ':'"),
        ("me:long-enough,:x", "entry 2 has an empty user name"),
    ],
)
def test_weak_or_malformed_credentials_refuse_to_start(monkeypatch, value, message):
    from kinject.web.auth import auth_for

    monkeypatch.setenv("KINJECT_AUTH", value)
    for host in ("0.0.0.0", "127.0.0.1"):  # a malformed value is never ignored, on loopback either
        with pytest.raises(SystemExit, match=message) as info:
            auth_for(host)
        assert "short" not in str(info.value).replace("'admin' is 5", "")  # the password is never shown


def test_good_credentials_are_parsed():
    from kinject.web.auth import parse_auth

    assert parse_auth("me:long-secret, you:a:b:c:d:e:f:g") == [("me", "long-secret"), ("you", "a:b:c:d:e:f:g")]
