"""The web face's login: strong $KINJECT_AUTH passwords, a brute-force limit per client address and per user name
from that address (the connection's peer unless the operator trusts a proxy), and the rule that an app bound off
loopback requires auth (or the operator's explicit KINJECT_ALLOW_NO_AUTH=1)."""

from __future__ import annotations

import collections
import contextvars
import hmac
import ipaddress
import itertools
import logging
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from starlette.middleware import Middleware

from kinject.settings.stages import ConfigError

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
    """ASGI middleware that makes each HTTP request's client address visible to ``LoginLimiter``: the peer of the
    connection, or, from a proxy the operator trusts (``forwarded_allow_ips``), the address it forwarded."""

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


def forwarded_allow_ips(trusted_proxies: list[str]) -> str:
    """uvicorn's ``FORWARDED_ALLOW_IPS`` for the operator's trusted proxies: the peers whose X-Forwarded-For names
    the client. None by default (""): uvicorn's own default trusts loopback, so a client on this machine, or one
    behind a local proxy that passes the header on, could name any address and dodge the login limit."""
    return ",".join(trusted_proxies)


def address_key(client: str) -> str:
    """The address the login limit counts for ``client``: an IPv6 client by its /64 (one subscriber's block; it can
    pick any address in it), an IPv4-mapped one as IPv4, anything else as it is."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class _Entry:
    """One counted key: its failures in the window, until when it is locked, and its lockouts so far."""

    failures: collections.deque = field(default_factory=collections.deque)
    until: float = 0.0
    lockouts: int = 0


class LoginLimiter:
    """Gradio's ``auth`` callable with a brute-force limit that cannot be turned against a user.

    Failed logins are counted per client address and per (user name, client address) in a sliding window;
    ``max_failures`` within ``window_s`` locks that address, or that name from that address, for ``lockout_s``,
    doubling with each further lockout up to ``max_lockout_s``. While locked, every login for it is refused, a correct
    password too (over HTTP: 429 with Retry-After). A name is never locked everywhere: whoever knows it can only lock
    themselves out, and its owner logs in from an address that has not failed. An attacker gets ``max_failures``
    guesses per address (an IPv6 /64) per lockout. Passwords are compared in constant time and never logged."""

    MAX_TRACKED = 10_000  # keys kept at most (an attacker can invent names and addresses); see _make_room

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
        self._state: dict[tuple[str, ...], _Entry] = {}  # ordered by latest failure, the longest quiet first
        self._full_logged = -math.inf

    @staticmethod
    def _keys(username: str, client: str | None) -> list[tuple[str, ...]]:
        address = address_key(client) if client else ""
        return [("user", username, address)] + ([("address", address)] if address else [])

    def locked_for(self, username: str, client: str | None = None) -> float:
        """Seconds until ``username`` may try again from ``client``; 0 when neither that address nor that name
        from it is locked (and the table has room to count a failure)."""
        now = self.clock()
        with self._lock:
            return self._wait(self._keys(username, client), now)

    def _wait(self, keys: list[tuple[str, ...]], now: float) -> float:
        until = max((self._state[k].until for k in keys if k in self._state), default=now)
        if until <= now and not self._make_room(keys, now):
            # the first lock to end frees a place
            until = min((e.until for e in self._state.values() if e.until > now), default=now + self.lockout_s)
            if now - self._full_logged >= 60:
                self._full_logged = now
                count = len(self._state)
                _LOG.warning("login: %d locked names and addresses; new ones are refused until one ends", count)
        return max(until - now, 0.0)

    def _make_room(self, keys: list[tuple[str, ...]], now: float) -> bool:
        """Whether a failure of ``keys`` can be counted, after forgetting the longest quiet unlocked keys if need
        be. A locked key is never forgotten (that would unlock it): when locked keys fill the table, an attempt
        that would need a new one is refused unchecked until a lock ends (so no guess goes uncounted)."""
        needed = sum(key not in self._state for key in keys)
        excess = len(self._state) + needed - self.MAX_TRACKED
        if excess > 0:
            idle = (key for key, entry in self._state.items() if entry.until <= now and key not in keys)
            for key in list(itertools.islice(idle, excess)):
                del self._state[key]
        return len(self._state) + needed <= self.MAX_TRACKED

    def check(self, username: str, password: str, client: str | None = None) -> bool:
        """Whether the login succeeds: the limit first, then the password (a failure counts toward a lockout)."""
        keys = self._keys(username, client)
        with self._lock:
            if self._wait(keys, self.clock()) > 0:
                return False
        expected = self._passwords.get(username)
        ok = hmac.compare_digest(password.encode(), expected if expected is not None else b"\0" * 32)
        ok = ok and expected is not None
        with self._lock:
            if ok:
                for key in keys:
                    self._state.pop(key, None)
                return True
            locked = self._count_failure(keys, self.clock())
        if locked:
            _LOG.warning(
                "login: %s locked after %d failed logins within %.0f s",
                " and ".join(locked), self.max_failures, self.window_s,
            )  # fmt: skip
        return False

    def _count_failure(self, keys: list[tuple[str, ...]], now: float) -> list[str]:
        """Count a failed login for each of ``keys``; what it locked, for the log. Concurrent failures may pass
        ``MAX_TRACKED`` by a few keys (checked before the password, counted after): never by forgetting a lock."""
        locked = []
        for key in keys:
            entry = self._state.pop(key, None) or _Entry()
            self._state[key] = entry  # (re)inserted last: the dict is ordered by latest failure
            if entry.lockouts and now > entry.until + self.max_lockout_s:
                entry.lockouts = 0  # quiet long enough since the last lockout: the backoff starts over
            entry.failures.append(now)
            while entry.failures and entry.failures[0] <= now - self.window_s:
                entry.failures.popleft()
            if len(entry.failures) >= self.max_failures:
                duration = min(self.lockout_s * 2**entry.lockouts, self.max_lockout_s)
                entry.until, entry.lockouts = now + duration, entry.lockouts + 1
                entry.failures.clear()
                locked.append(f"{_describe(key)} for {duration:.0f} s")
        self._make_room([], now)
        return locked

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


def _describe(key: tuple[str, ...]) -> str:
    """A counted key as the log names it: "address '10.0.0.2'", "user 'me' from '10.0.0.2'"."""
    if key[0] == "address":
        return f"address {key[1]!r}"
    return f"user {key[1][:64]!r}" + (f" from {key[2]!r}" if key[2] else "")


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
