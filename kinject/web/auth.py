"""The web face's login: strong $KINJECT_AUTH passwords, a brute-force limit per user name and client address, and
the rule that an app bound off loopback requires auth (or the operator's explicit KINJECT_ALLOW_NO_AUTH=1)."""

from __future__ import annotations

import collections
import contextvars
import hmac
import ipaddress
import logging
import math
import os
import re
import sys
import threading
import time
from typing import Any

from fastapi import HTTPException
from starlette.middleware import Middleware

from kinject.config import ConfigError

MIN_PASSWORD_CHARS = 8

# The most guessed passwords, compared after lowercasing and dropping trailing digits and symbols ("Password1!").
COMMON_PASSWORDS = frozenset(
    {
        "password", "passw0rd", "p@ssw0rd", "qwerty", "qwertyuiop", "letmein", "welcome", "iloveyou", "admin",
        "administrator", "changeme", "secret", "trustno", "monkey", "dragon", "football", "baseball", "sunshine",
        "princess", "master", "login", "abc", "qaz2wsx", "1qaz2wsx", "zaq1xsw2", "default", "kinject",
    }
)  # fmt: skip
# Keyboard rows and the alphabet, forwards (a password that is a stretch of one of these or its reverse is a "run").
_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def password_weakness(user: str, password: str) -> str | None:
    """Why ``password`` is too easy to guess for ``user`` ("only digits", ...), or None if it is acceptable."""
    if len(password) < MIN_PASSWORD_CHARS:
        size = f"{len(password)} characters" if password else "empty"
        return f"{size}; use at least {MIN_PASSWORD_CHARS} characters"
    lowered = password.lower()
    core = re.sub(r"[\W\d_]+$", "", lowered)  # "Password1!" -> "password"
    if lowered == user.lower() or core == user.lower():
        return "the user name"
    if password.isdigit():
        return "only digits"
    if re.fullmatch(r"(.{1,4})\1+", lowered):
        return "a repeated pattern"
    if any(lowered in seq or lowered in seq[::-1] for seq in _SEQUENCES):
        return "a keyboard or alphabet run"
    if lowered in COMMON_PASSWORDS or core in COMMON_PASSWORDS:
        return "a common password"
    return None


def parse_auth(raw: str) -> list[tuple[str, str]]:
    """Credentials from a $KINJECT_AUTH value, "user:password[,user2:password2]": each entry needs a user name and a
    password of at least MIN_PASSWORD_CHARS characters that is not easily guessed (``password_weakness``). Raises
    ConfigError naming the entry (never its password)."""
    creds = []
    for number, entry in enumerate(raw.split(","), 1):
        user, sep, password = entry.partition(":")
        user = user.strip()
        if not sep:
            raise ConfigError(
                f"KINJECT_AUTH: entry {number} has no ':' (the format is user:password[,user2:password2])"
            )
        if not user:
            raise ConfigError(f"KINJECT_AUTH: entry {number} has an empty user name")
        weakness = password_weakness(user, password)
        if weakness and len(password) < MIN_PASSWORD_CHARS:
            raise ConfigError(f"KINJECT_AUTH: the password of {user!r} is {weakness}")
        if weakness:
            raise ConfigError(
                f"KINJECT_AUTH: the password of {user!r} is {weakness}, which is easy to guess; choose another "
                "(e.g. a few random words)"
            )
        creds.append((user, password))
    return creds


# The client address of the request being served, set by ClientAddressMiddleware for the auth callable: gradio calls
# ``auth(username, password)`` without the request.
_CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("kinject_client_address", default=None)
_LOG = logging.getLogger("kinject.app")


class ClientAddressMiddleware:
    """ASGI middleware that makes each HTTP request's client address visible to ``LoginLimiter`` (the address the
    server sees: behind a proxy, the proxy's unless uvicorn trusts its X-Forwarded-For)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        token = _CLIENT_ADDRESS.set(client[0] if client else None)
        try:
            return await self.app(scope, receive, send)
        finally:
            _CLIENT_ADDRESS.reset(token)


class LoginLimiter:
    """Gradio's ``auth`` callable with a brute-force limit. Failed logins are counted per user name and per client
    address in a sliding window; ``max_failures`` within ``window_s`` locks that name or address for ``lockout_s``,
    doubling with each further lockout up to ``max_lockout_s``. While locked, every login for it is refused, a correct
    password too (over HTTP: 429 with Retry-After). Passwords are compared in constant time and never logged."""

    MAX_TRACKED = 10_000  # keys kept at most (an attacker can invent user names); the oldest idle ones go first

    def __init__(
        self,
        creds: list[tuple[str, str]],
        *,
        max_failures: int = 5,
        window_s: float = 300.0,
        lockout_s: float = 60.0,
        max_lockout_s: float = 900.0,
        clock=time.monotonic,
    ):
        self._passwords = {user: password.encode() for user, password in creds}
        self.max_failures, self.window_s = max_failures, window_s
        self.lockout_s, self.max_lockout_s = lockout_s, max_lockout_s
        self.clock = clock
        self._lock = threading.Lock()
        # key -> [failure times in the window, locked until, lockouts so far]
        self._state: dict[tuple[str, str], list] = {}

    def _keys(self, username: str, client: str | None) -> list[tuple[str, str]]:
        return [("user", username)] + ([("address", client)] if client else [])

    def locked_for(self, username: str, client: str | None = None) -> float:
        """Seconds until ``username`` (and ``client``) may try again; 0 when neither is locked."""
        now = self.clock()
        with self._lock:
            until = max((self._state[k][1] for k in self._keys(username, client) if k in self._state), default=now)
        return max(until - now, 0.0)

    def check(self, username: str, password: str, client: str | None = None) -> bool:
        """Whether the login succeeds: the limit first, then the password (a failure counts toward a lockout)."""
        if self.locked_for(username, client) > 0:
            return False
        expected = self._passwords.get(username)
        ok = hmac.compare_digest(password.encode(), expected if expected is not None else b"\0" * 32)
        ok = ok and expected is not None
        now = self.clock()
        with self._lock:
            keys = self._keys(username, client)
            if ok:
                for key in keys:
                    self._state.pop(key, None)
                return True
            locked = []
            for key in keys:
                state = self._state.pop(key, None) or [collections.deque(), 0.0, 0]
                self._state[key] = state  # (re)inserted last: the dict is ordered by latest failure
                failures = state[0]
                if state[2] and now > state[1] + self.max_lockout_s:
                    state[2] = 0  # quiet long enough since the last lockout: the backoff starts over
                failures.append(now)
                while failures and failures[0] <= now - self.window_s:
                    failures.popleft()
                if len(failures) >= self.max_failures:
                    duration = min(self.lockout_s * 2 ** state[2], self.max_lockout_s)
                    state[1], state[2] = now + duration, state[2] + 1
                    failures.clear()
                    locked.append(f"{key[0]} {key[1][:64]!r} for {duration:.0f} s")
            while len(self._state) > self.MAX_TRACKED:
                del self._state[next(iter(self._state))]  # the longest quiet first
        if locked:
            _LOG.warning(
                "login: %s locked after %d failed logins within %.0f s",
                " and ".join(locked), self.max_failures, self.window_s,
            )  # fmt: skip
        return False

    def __call__(self, username: str, password: str) -> bool:
        """The ``auth`` gradio calls from its /login route, with the request's client address from the middleware."""
        client = _CLIENT_ADDRESS.get()
        wait = self.locked_for(username, client)
        if wait > 0:
            raise HTTPException(
                status_code=429,
                detail="Too many failed logins; try again later.",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        return self.check(username, password, client)


def auth_launch_kwargs(creds: list[tuple[str, str]] | None, **limits) -> dict[str, Any]:
    """``launch()`` arguments for these credentials: a ``LoginLimiter`` and the middleware that feeds it addresses."""
    if not creds:
        return {"auth": None}
    return {
        "auth": LoginLimiter(creds, **limits),
        "app_kwargs": {"middleware": [Middleware(ClientAddressMiddleware)]},
    }


def auth_for(host: str) -> list[tuple[str, str]] | None:
    """Credentials from $KINJECT_AUTH ("user:pass[,user2:pass2]"); required off loopback. A malformed or weak
    value stops the app with a message (even on loopback): ignoring it would serve without the auth it meant."""
    raw = os.environ.get("KINJECT_AUTH", "").strip()
    if raw:
        try:
            return parse_auth(raw)
        except ConfigError as exc:
            sys.exit(f"error: {exc}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        if os.environ.get("KINJECT_ALLOW_NO_AUTH") != "1":
            sys.exit(
                f"error: refusing to serve on {host} without authentication: anyone who reaches it could make this "
                "server fetch URLs and use its GPU. Set KINJECT_AUTH=user:password, or KINJECT_ALLOW_NO_AUTH=1 if a "
                "proxy in front authenticates."
            )
        print(f"WARNING: serving on {host} WITHOUT authentication (KINJECT_ALLOW_NO_AUTH=1)", file=sys.stderr)
    return None
