"""SSRF fetch guard: an httpx client that only talks to public http(s) addresses.

The app fetches URLs that users paste, so without a fetch guard anyone could make the server read its cloud metadata
(169.254.169.254), a database admin page on 10.x, or a service bound to localhost. The fetch guard refuses

- schemes other than http and https (``file:``, ``ftp:``, ``gopher:`` ...), for the first URL and every redirect;
- addresses that are loopback, private, link-local, multicast, reserved, unspecified or otherwise not globally
  routable, IPv4 and IPv6, including IPv4 addresses embedded in IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo).

The address check happens where the socket is opened: an httpcore network backend resolves the host name itself,
validates every address it got, and connects to one of those validated addresses. There is no second lookup that a
DNS-rebinding server could answer differently, and since every redirect hop opens its connection through the same
backend, every hop is checked. TLS still uses the host name (httpcore passes ``server_hostname`` from the URL to
``start_tls``, not the connected address), and so does the ``Host`` header. Environment proxies are ignored
(``trust_env=False``): a proxy would do the resolving and connecting, out of our sight.

Inside ``deadline(seconds)`` every step the client takes in that thread (name lookup, connect, TLS, each read and
write of headers and body, on every redirect hop) gets at most the time left, so one page cannot outlast its
deadline however slowly a server dribbles its headers.

Why not a library: the maintained candidates for httpx (``safehttpx``, gradio's; ``httpx-secure``; langchain-core's
``SSRFSafeTransport``) are async-only, and ``safehttpx`` also asks Google's DNS-over-HTTPS when the local lookup finds
no public address, turns itself off when proxy variables are set, has no CIDR allow-list and leaves redirects
unchecked. What we need (a sync client, an opt-in for private addresses, an allow-list) is about a hundred lines
on top of httpcore's public ``SyncBackend``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from ..settings.sources import FetchConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
_OPT_IN_HINT = "use --allow-private-urls to allow"


class BlockedURLError(Exception):
    """A URL or address the fetch guard refuses; the message says why and how to opt in."""


# ---------------------------------------------------------------------------------------------------- deadline

DEADLINE_MESSAGE = "timeout: page not received within {seconds:g} s"
_deadline = threading.local()  # (monotonic end, seconds) of the fetch this thread is doing, or None


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every network step of the guarded client in this thread to ``seconds`` in all (redirects included).

    httpx's timeouts are per operation, so a server that sends a byte every second never trips them; within this
    block each lookup, connect, read and write is given at most the time left, and none starts once it is spent.
    """
    previous = getattr(_deadline, "value", None)
    _deadline.value = (time.monotonic() + seconds, seconds)
    try:
        yield
    finally:
        _deadline.value = previous


def _time_left(timeout: float | None, error: type[Exception]) -> tuple[float | None, bool]:
    """(the timeout to use, whether the deadline set it); raises ``error`` once the deadline has passed."""
    current = getattr(_deadline, "value", None)
    if current is None:
        return timeout, False
    left = current[0] - time.monotonic()
    if left <= 0:
        raise error(DEADLINE_MESSAGE.format(seconds=current[1]))
    return (left, True) if timeout is None or left < timeout else (timeout, False)


def _expired() -> str:
    return DEADLINE_MESSAGE.format(seconds=_deadline.value[1])


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads, writes and TLS handshake stop at the current thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        timeout, clamped = _time_left(timeout, httpcore.ReadTimeout)
        try:
            return self._stream.read(max_bytes, timeout)
        except httpcore.ReadTimeout as exc:
            if clamped:
                raise httpcore.ReadTimeout(_expired()) from exc
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        timeout, clamped = _time_left(timeout, httpcore.WriteTimeout)
        try:
            self._stream.write(buffer, timeout)
        except httpcore.WriteTimeout as exc:
            if clamped:
                raise httpcore.WriteTimeout(_expired()) from exc
            raise

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        timeout, clamped = _time_left(timeout, httpcore.ConnectTimeout)
        try:
            return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))
        except httpcore.ConnectTimeout as exc:
            if clamped:
                raise httpcore.ConnectTimeout(_expired()) from exc
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _getaddrinfo(host: str, port: int, timeout: float | None) -> list[Any]:
    """``socket.getaddrinfo`` given at most ``timeout`` seconds (the system resolver has no timeout of its own)."""
    if timeout is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    answer: dict[str, Any] = {}

    def lookup() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            answer["error"] = exc

    thread = threading.Thread(target=lookup, name=f"kinject-dns-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise httpcore.ConnectTimeout(f"timed out looking up {host} (no DNS answer within {timeout:g} s)")
    if "error" in answer:
        raise answer["error"]
    return answer["infos"]


def _networks(allowed_networks: Iterable[str | Network]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from ("a private address", ...), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 reaches that IPv4 host: judge the IPv4 address.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            reason = blocked_reason(embedded)
            if reason:
                return f"{reason} ({embedded} inside IPv6)"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def check_ip(
    ip: str | IPAddress,
    allow_private: bool = False,
    allowed_networks: Iterable[str | Network] = (),
    host: str | None = None,
) -> None:
    """Raise BlockedURLError unless ``ip`` is public, in ``allowed_networks``, or ``allow_private`` is set."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if allow_private:
        return
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    if any(a in net for a in candidates for net in _networks(allowed_networks) if a.version == net.version):
        return
    reason = blocked_reason(address)
    if reason is None:
        return
    subject = f"{host} resolves to {address}, which" if host and host != str(address) else str(address)
    raise BlockedURLError(f"refused: {subject} is {reason} ({_OPT_IN_HINT})")


# The IPv4 forms C's inet_aton takes besides the dotted quad ("127.1", "0x7f.0.0.1", "2130706433"): the system's
# resolver reads them as addresses without asking DNS, and so do fetchers.
_IPV4_NUMBERS = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)


def ip_literal(host: str) -> IPAddress | None:
    """The IP address ``host`` spells (within brackets, with an IPv6 zone, or in a numeric IPv4 form), or None for a
    host name; nothing is looked up. The guard refuses such an address before connecting, and a model card names
    it (``kinject.sharing.card``)."""
    host = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _IPV4_NUMBERS.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))  # parses numbers only: no lookup
        except OSError:
            return None
    return None


def check_url(
    url: str | httpx.URL, allow_private: bool = False, allowed_networks: Iterable[str | Network] = ()
) -> None:
    """Refuse a URL up front: wrong scheme, no host, or a literal IP that is not public.

    Host names are checked at connect time (they may resolve differently by then); this gives early, clear errors.
    Raises BlockedURLError, or httpx.InvalidURL for a URL that cannot be parsed.
    """
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url.strip())
    scheme = parsed.scheme
    if scheme not in ALLOWED_SCHEMES:
        shown = f"scheme {scheme!r}" if scheme else "a URL without scheme"
        raise BlockedURLError(f"refused: {shown} is not http or https")
    if not parsed.host:
        raise BlockedURLError(f"refused: {str(url)!r} has no host")
    literal = ip_literal(parsed.host)
    if literal is not None:  # a numeric spelling names the address it stands for
        check_ip(literal, allow_private, allowed_networks, host=parsed.host.strip("[]").split("%")[0])


class GuardedBackend(httpcore.SyncBackend):
    """httpcore network backend that resolves the host itself and connects only to validated addresses."""

    def __init__(self, allow_private: bool = False, allowed_networks: Iterable[str | Network] = ()) -> None:
        self.allow_private = allow_private
        self.allowed_networks = _networks(allowed_networks)

    def resolve(self, host: str, port: int, timeout: float | None = None) -> list[str]:
        """Every address ``host`` resolves to, all checked; raises if any is refused (a mixed answer is suspect)."""
        try:
            infos = _getaddrinfo(host, port, timeout)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"unknown host {host!r} (DNS lookup failed: {exc})") from exc
        addresses: list[str] = []
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = str(sockaddr[0]).split("%")[0]
            check_ip(ip, self.allow_private, self.allowed_networks, host=host)
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise httpcore.ConnectError(f"unknown host {host!r} (no IPv4 or IPv6 address)")
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        limit, _ = _time_left(timeout, httpcore.ConnectTimeout)
        for ip in self.resolve(host, port, limit):
            limit, clamped = _time_left(timeout, httpcore.ConnectTimeout)
            try:
                # An IP literal: the parent's socket.create_connection does no further DNS lookup.
                return _DeadlineStream(super().connect_tcp(ip, port, limit, local_address, socket_options))
            except httpcore.ConnectTimeout as exc:
                if clamped:
                    raise httpcore.ConnectTimeout(_expired()) from exc
                last = httpcore.ConnectTimeout(f"timed out connecting to {host} ({ip}:{port})")
                last.__cause__ = exc
            except httpcore.ConnectError as exc:
                cause = exc.__cause__
                if isinstance(cause, ConnectionRefusedError):
                    last = httpcore.ConnectError(f"connection refused by {host} ({ip}:{port})")
                else:
                    last = httpcore.ConnectError(f"cannot connect to {host} ({ip}:{port}): {cause or exc}")
                last.__cause__ = exc
        assert last is not None
        raise last


class GuardedTransport(httpx.HTTPTransport):
    """httpx transport whose connections go through GuardedBackend; also checks each request's URL first."""

    def __init__(
        self,
        allow_private: bool = False,
        allowed_networks: Iterable[str | Network] = (),
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
    ) -> None:
        super().__init__(limits=limits)
        self.allow_private = allow_private
        self.allowed_networks = _networks(allowed_networks)
        # httpx 0.28 builds its httpcore pool in __init__ with no way to pass a network backend, so we replace the
        # pool with an identical one (same SSL and limit settings, see httpx/_transports/default.py) plus our backend.
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError("httpx.HTTPTransport layout changed: cannot install the SSRF guard")
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # as HTTPTransport's default: certifi, or SSL_CERT_FILE/DIR
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(allow_private, self.allowed_networks),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check_url(request.url, self.allow_private, self.allowed_networks)
        return super().handle_request(request)


class GuardedClient(httpx.Client):
    """httpx.Client that checks each URL as given, before httpx merges it (which would turn ``file:///x`` into a
    scheme-less relative URL and lose the reason)."""

    def __init__(self, allow_private: bool, allowed_networks: Iterable[str | Network], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_private = allow_private
        self.allowed_networks = _networks(allowed_networks)

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        check_url(url, self.allow_private, self.allowed_networks)
        return super().build_request(method, url, **kwargs)


def guarded_client(config: FetchConfig) -> httpx.Client:
    """An httpx.Client for user-supplied URLs: guarded connections, limits and user agent from ``config``.

    Redirects are followed by default (at most ``config.max_redirects``; more raises httpx.TooManyRedirects); each
    hop goes through the transport again, so its scheme, literal address and resolved address are all checked.
    """
    limits = httpx.Limits(
        max_connections=max(config.max_concurrency, 1) * 2, max_keepalive_connections=config.max_concurrency
    )
    transport = GuardedTransport(config.allow_private_urls, config.allowed_networks, limits=limits)
    return GuardedClient(
        config.allow_private_urls,
        config.allowed_networks,
        transport=transport,
        trust_env=False,
        follow_redirects=True,
        max_redirects=config.max_redirects,
        timeout=httpx.Timeout(config.timeout_s),
        headers={"User-Agent": config.user_agent},
    )
