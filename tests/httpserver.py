"""A loopback HTTP server for tests: the sample pages plus one route per failure the fetcher must report.

Routes (GET):
  /<name>.html            a file of ``root`` (text/html; charset=utf-8)
  /404, /500              those statuses
  /slow                   answers after ``slow_s`` seconds (longer than the tests' timeout)
  /huge                   ``huge_bytes`` of HTML with Content-Length
  /huge-stream            the same without Content-Length, streamed until the client hangs up; ``huge_sent`` counts
  /trickle                one byte every 0.1 s for 10 s (defeats a per-read timeout)
  /dribble-headers        the status line and headers one byte every 0.05 s, for up to 30 s (never a body)
  /slow-redirect?n=N      waits 0.4 s, then 302 to n=N-1; n=0 is a page (each hop within any per-read timeout)
  /binary-html            64 kB of random bytes labelled text/html
  /banner-only            a page whose only text is a cookie banner and a menu
  /deep                   an article nested 400 <div>s deep (deeper than lxml's parser keeps)
  /binary                 a PNG
  /latin1                 a cp1252 page declared by <meta charset="windows-1252">
  /latin1-header          an ISO-8859-1 page declared only in the Content-Type header
  /latin1-undeclared      a cp1252 page with no charset anywhere
  /empty                  HTML without any visible text
  /text, /markdown        text/plain and text/markdown pages
  /no-type                an HTML page without Content-Type
  /redirect-to?url=U      302 to U;  /redirect-loop: 302 to itself
  /encoded?encoding=E     an article page sent with Content-Encoding E ("gzip", "deflate", "br", "gzip, gzip" ...;
                          &raw=1: deflate without its zlib header, as some servers send it; other names: a label)
  /bomb?encoding=E        256 MB of HTML in E: a gzip layer is 255 kB on the wire, two layers or br well under 64 kB
Every request is recorded in ``requests`` (path) and ``hosts`` (Host header), so tests can tell whether a server
was reached at all.

``NetJail`` keeps tests off the network: name lookups answer from a table (never a DNS server) and any connection
to a non-loopback address fails the test instead of leaving the machine.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import ssl
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

LATIN1_TEXT = "Le café de Zürich sert une crème brûlée à cinq francs, « très naïf », dit Ørsted."  # ISO-8859-1
CP1252_TEXT = "Prix : 5 € — l’équipe “Forêt” le confirme."  # needs windows-1252 (euro, dash, curly quotes)
LATIN1_PAGE = (
    "<html><head>{meta}<title>Café à Zürich</title></head><body><article><h1>Café à Zürich</h1>"
    f"<p>{LATIN1_TEXT}</p><p>Les garçons mangent des crêpes façon Besançon près de la Forêt-Noire.</p>"
    "{extra}</article></body></html>"
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
TEXT_BODY = "Plain text first paragraph about the llamas of Lima.\n\nSecond paragraph: they like rain.\n"
MARKDOWN_BODY = "# Llama notes\n\nThe llamas of Lima **prefer** rain.\n\n- one\n- two\n"
ARTICLE_TEXT = (
    "The llamas of Lima prefer rain, and the 2026 census counted four thousand of them in the hills above the "
    "city. Herders say the animals walk up to twenty kilometres a day in search of fresh grass."
)
ARTICLE_PAGE = (
    f"<html><head><title>Llamas of Lima</title></head><body><article><p>{ARTICLE_TEXT}</p></article></body></html>"
)
BANNER_PAGE = (
    "<html><head><title>Welcome</title></head><body>"
    '<nav><a href="/">Home</a> <a href="/news">News</a></nav>'
    '<div id="cookie-banner"><p>We use cookies to improve your experience.</p><button>Accept all</button></div>'
    "</body></html>"
)
DEEP_PAGE = (
    "<html><head><title>Deep</title></head><body>"
    + "<div>" * 400
    + f"<p>{ARTICLE_TEXT}</p>"
    + "</div>" * 400
    + "</body></html>"
)


BOMB_BYTES = 256 * 2**20
_ENCODED: dict[tuple[tuple[str, ...], bool, bool], bytes] = {}


def encoded(names: list[str], bomb: bool = False, raw: bool = False) -> bytes:
    """The article page (or ``BOMB_BYTES`` of HTML) with the content encodings ``names`` applied in order; cached,
    since a bomb takes a second to make."""
    key = (tuple(names), bomb, raw)
    if key not in _ENCODED:
        head = b"<html><body><p>"
        pieces = [head, *[b"a" * 2**20] * (BOMB_BYTES >> 20)] if bomb else [ARTICLE_PAGE.encode()]
        for name in names:
            pieces = [_encode(name, pieces, raw)]
        _ENCODED[key] = pieces[0]
    return _ENCODED[key]


def _encode(name: str, pieces: list[bytes], raw: bool) -> bytes:
    if name == "br":
        import brotli

        compressor = brotli.Compressor(quality=1)
        return b"".join(compressor.process(p) for p in pieces) + compressor.finish()
    if name not in ("gzip", "deflate"):  # a label only (zstd ...): the bytes go as they are
        return b"".join(pieces)
    wbits = {"gzip": zlib.MAX_WBITS | 16, "deflate": -zlib.MAX_WBITS if raw else zlib.MAX_WBITS}[name]
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(compressor.compress(p) for p in pieces) + compressor.flush()


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, host: str, root: Path | None, slow_s: float, huge_bytes: int, tls: tuple[Path, Path] | None = None
    ) -> None:
        super().__init__((host, 0), _Handler)
        self.scheme = "http"
        self.sni: list[str | None] = []  # server name each TLS client asked for
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            context.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
            # Handshake on first read, in the handler thread, so one bad client cannot stall accept().
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
            self.scheme = "https"
        self.root = root
        self.slow_s = slow_s
        self.huge_bytes = huge_bytes
        self.huge_sent = 0
        self.requests: list[str] = []
        self.hosts: list[str] = []  # Host header of each request
        self.stopping = threading.Event()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: SiteServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass

    def _send(self, status: int, body: bytes, content_type: str | None, length: bool = True, **headers: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        path = url.path
        self.server.requests.append(self.path)
        self.server.hosts.append(self.headers.get("Host", ""))
        html = "text/html; charset=utf-8"
        if path == "/404":
            self._send(404, b"<html><body><p>no such page</p></body></html>", html)
        elif path == "/500":
            self._send(500, b"<html><body><p>it broke</p></body></html>", html)
        elif path == "/slow":
            self.server.stopping.wait(self.server.slow_s)  # returns at once when the server shuts down
            self._send(200, b"<html><body><p>finally here</p></body></html>", html)
        elif path == "/huge":
            self._send(200, b"<html><body><p>" + b"x" * self.server.huge_bytes + b"</p></body></html>", html)
        elif path == "/huge-stream":
            self._stream_huge()
        elif path == "/trickle":
            self._trickle()
        elif path == "/dribble-headers":
            self._dribble_headers()
        elif path == "/slow-redirect":
            hops = int(parse_qs(url.query).get("n", ["0"])[0])
            if self.server.stopping.wait(0.4):
                return
            if hops > 0:
                self._send(302, b"", "text/plain", Location=f"/slow-redirect?n={hops - 1}")
            else:
                self._send(200, ARTICLE_PAGE.encode(), html)
        elif path == "/binary-html":
            self._send(200, random.Random(7).randbytes(64_000), "text/html")
        elif path == "/banner-only":
            self._send(200, BANNER_PAGE.encode(), html)
        elif path == "/deep":
            self._send(200, DEEP_PAGE.encode(), html)
        elif path == "/binary":
            self._send(200, PNG, "image/png")
        elif path == "/latin1":
            page = LATIN1_PAGE.format(meta='<meta charset="windows-1252">', extra=f"<p>{CP1252_TEXT}</p>")
            self._send(200, page.encode("cp1252"), "text/html")
        elif path == "/latin1-header":
            page = LATIN1_PAGE.format(meta="", extra="")
            self._send(200, page.encode("iso-8859-1"), "text/html; charset=ISO-8859-1")
        elif path == "/latin1-undeclared":
            page = LATIN1_PAGE.format(meta="", extra=f"<p>{CP1252_TEXT}</p>")
            self._send(200, page.encode("cp1252"), "text/html")
        elif path == "/empty":
            body = b"<html><head><title></title><script>var a = 1;</script></head><body><div></div></body></html>"
            self._send(200, body, html)
        elif path == "/text":
            self._send(200, TEXT_BODY.encode(), "text/plain; charset=utf-8")
        elif path == "/markdown":
            self._send(200, MARKDOWN_BODY.encode(), "text/markdown; charset=utf-8")
        elif path == "/no-type":
            self._send(200, b"<!doctype html><html><body><p>A page that forgot its type.</p></body></html>", None)
        elif path == "/redirect-to":
            target = parse_qs(url.query).get("url", [""])[0]
            self._send(302, b"", "text/plain", Location=target)
        elif path == "/redirect-loop":
            self._send(302, b"", "text/plain", Location="/redirect-loop")
        elif path in ("/encoded", "/bomb"):
            query = parse_qs(url.query)
            names = [n.strip() for n in query.get("encoding", ["gzip"])[0].split(",")]
            body = encoded(names, bomb=path == "/bomb", raw="raw" in query)
            self._send(200, body, html, Content_Encoding=", ".join(names))
        elif self.server.root is not None and (file := self._file(path)) is not None:
            self._send(200, file.read_bytes(), html)
        else:
            self._send(404, b"not found", "text/plain")

    def _file(self, path: str) -> Path | None:
        name = path.lstrip("/")
        if not name or "/" in name or name.startswith("."):
            return None
        candidate = self.server.root / name
        return candidate if candidate.is_file() else None

    def _trickle(self) -> None:
        """A byte every 0.1 s for at most 10 s: never idle long enough for a read timeout."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        try:
            for _ in range(100):
                if self.server.stopping.wait(0.1):
                    return
                self.wfile.write(b"a")
                self.wfile.flush()
        except OSError:
            pass

    def _dribble_headers(self) -> None:
        """A status line and headers that never end, one byte at a time: a per-read timeout never fires."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + b"X-Slow: " + b"a" * 10_000
        try:
            for byte in head[:600]:  # 600 x 0.05 s = 30 s
                if self.server.stopping.wait(0.05):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def _stream_huge(self) -> None:
        """No Content-Length (HTTP/1.0: the body ends when the connection closes); stops when the client leaves."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        chunk = b"<p>" + b"y" * 16_380 + b"</p>"
        try:
            while self.server.huge_sent < self.server.huge_bytes * 100 and not self.server.stopping.is_set():
                self.wfile.write(chunk)
                self.server.huge_sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def serve(
    host: str = "127.0.0.1",
    root: Path | None = None,
    slow_s: float = 5.0,
    huge_bytes: int = 200_000,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[SiteServer]:
    """Run a SiteServer on ``host`` (an ephemeral port) in a thread; shut it down on exit.

    ``tls`` = (certificate, key) serves HTTPS instead of HTTP.
    """
    server = SiteServer(host, root, slow_s, huge_bytes, tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class NetJail:
    """Fake DNS and a loopback-only ``socket.create_connection``, installed with pytest's monkeypatch.

    ``dns`` maps a host name to its addresses, or to a callable returning them (to answer differently each time,
    as a rebinding DNS server does). Unknown names fail like a real failed lookup. ``connects`` lists every
    address a connection was attempted to.
    """

    def __init__(self, monkeypatch: Any) -> None:
        self.dns: dict[str, Any] = {"localhost": ["127.0.0.1"]}
        self.connects: list[str] = []
        self._real_getaddrinfo = socket.getaddrinfo
        self._real_create_connection = socket.create_connection
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", self.create_connection)

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):  # noqa: A002
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:  # numeric forms (127.0.0.1, ::1, 2130706433) are parsed locally, never looked up
            return self._real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        answer = self.dns.get(name.lower().rstrip("."))
        if callable(answer):
            answer = answer()
        if not answer:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        port_number = int(port or 0)
        infos = []
        for ip in answer:
            if ipaddress.ip_address(ip).version == 6:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port_number, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port_number)))
        return infos

    def create_connection(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host = str(address[0])
        self.connects.append(host)
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise AssertionError(f"test tried to connect to {host}, which is not a loopback address")
        return self._real_create_connection(address, *args, **kwargs)


@contextmanager
def in_thread(server: Any) -> Iterator[Any]:
    """Serve ``server`` (any socketserver) from a thread for the block; shut it down and close it on exit."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def loopback(**changes: Any) -> Any:
    """Fetch settings for the loopback test site: private addresses allowed, a 5 s read timeout and a 1 s deadline
    per page (``changes`` replace any of them)."""
    from kinject.settings.sources import FetchConfig

    return FetchConfig(**{"allow_private_urls": True, "timeout_s": 5, "total_timeout_s": 1, **changes})
