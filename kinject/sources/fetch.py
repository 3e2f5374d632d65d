"""Fetching: get URLs and read local files into ``Source`` rows (stage: sources; the text comes from ``extract``).

URLs go through the SSRF-guarded client of ``kinject.sources.fetch_guard`` under one deadline per page (connect,
headers, body and redirects); bodies are streamed and decoded (gzip, deflate, brotli) in bounded pieces with a cap on
the decoded bytes. Files must be regular files (a symbolic link only to a file in its own folder) and are refused by
size before they are read. Both are handed to ``kinject.sources.extract`` with their declared charset. The text that
comes out passes a quality gate (no binary data, real words). Every input gives exactly one ``Source`` row; a bad input
becomes an error row with a specific message and never stops the others.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from kinject.runtime.progress import Progress
from kinject.sources.extract import SourceError, check_text, extract, sniff
from kinject.sources.fetch_guard import DEADLINE_MESSAGE, BlockedURLError, check_url, deadline, guarded_client

from ..settings.sources import FetchConfig

# Media type -> how the body is read.
CONTENT_TYPES = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "text/markdown": "text",
    "text/x-markdown": "text",
    "application/pdf": "pdf",
}
FILE_TYPES = {".html": "html", ".htm": "html", ".txt": "text", ".md": "text", ".pdf": "pdf"}


@dataclass
class Source:
    """One input (URL or file) and what came of it; one row of ``sources.jsonl``."""

    input: str
    kind: str  # "url" | "file"
    status: str  # "ok" | "error" | "duplicate"
    title: str = ""
    text: str = ""  # main text, paragraphs separated by a blank line
    error: str = ""
    final_url: str = ""  # after redirects (URLs only)
    content_type: str = ""
    fetched_at: str = ""  # ISO-8601, UTC
    bytes: int = 0  # body size read


def fetch_sources(
    urls: list[str], files: list[str], config: FetchConfig, progress: Progress | None = None
) -> list[Source]:
    """Fetch ``urls`` and read ``files`` (at most ``config.max_concurrency`` at once); one Source per input, in order.

    Never raises for a bad input: its row has ``status="error"`` and the reason. A repeated input (same URL up to
    white space and fragment, or the same file) gets ``status="duplicate"`` and is not fetched again.
    """
    progress = progress or Progress()
    inputs = [("url", u) for u in urls] + [("file", f) for f in files]
    results: list[Source | None] = [None] * len(inputs)
    progress.start("fetch", total=len(inputs), unit="page")

    first_seen: dict[str, int] = {}
    todo: list[int] = []
    for i, (kind, raw) in enumerate(inputs):
        key = _dedup_key(kind, raw)
        if key in first_seen:
            j = first_seen[key]
            results[i] = Source(
                input=raw, kind=kind, status="duplicate", error=f"same as input {j + 1} ({inputs[j][1].strip()})"
            )
            progress.advance(1, status="duplicate")
        else:
            first_seen[key] = i
            todo.append(i)

    with guarded_client(config) as client, ThreadPoolExecutor(max_workers=config.max_concurrency) as pool:
        futures: dict[Future[Source], int] = {}
        for i in todo:
            kind, raw = inputs[i]
            futures[pool.submit(_load, kind, raw, client, config, progress)] = i
        for future, i in futures.items():  # in input order; each worker advances the progress when it finishes
            results[i] = future.result()
    progress.finish()
    return [r for r in results if r is not None]


def _load(kind: str, raw: str, client: httpx.Client, config: FetchConfig, progress: Progress) -> Source:
    """Load one input into a Source, turning every failure into an error row."""
    if progress.should_stop():
        source = Source(input=raw, kind=kind, status="error", error="stopped by the user")
    else:
        source = Source(input=raw, kind=kind, status="ok", fetched_at=_now())
        try:
            if kind == "url":
                _fetch_url(source, client, config)
            else:
                _read_file(source, config)
            if not source.text.strip():
                raise SourceError("no text could be extracted")
            check_text(source.text)
        except (SourceError, BlockedURLError) as exc:
            source.status, source.error = "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad source must never stop the others
            source.status, source.error = "error", _describe(exc, config)
        if source.status == "error":
            source.text = ""
    progress.advance(1, status=source.status)
    if source.status == "error":
        progress.log(f"{raw}: {source.error}")
    return source


def _describe(exc: Exception, config: FetchConfig) -> str:
    """A short, specific message for an exception raised while fetching."""
    if isinstance(exc, httpx.TimeoutException) and str(exc) == _deadline_message(config):
        return str(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timeout: no connection within {config.timeout_s:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout: no data for {config.timeout_s:g} s"
    if isinstance(exc, httpx.TooManyRedirects):
        return f"too many redirects (more than {config.max_redirects})"
    if isinstance(exc, httpx.ConnectError):
        return str(exc) or "connection failed"
    if isinstance(exc, httpx.InvalidURL):
        return f"malformed URL: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    return f"unexpected error ({type(exc).__name__}: {exc})"


def _deadline_message(config: FetchConfig) -> str:
    return DEADLINE_MESSAGE.format(seconds=config.total_timeout_s)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dedup_key(kind: str, raw: str) -> str:
    raw = raw.strip()
    if kind == "file":
        try:
            return "file:" + str(Path(raw).expanduser().resolve())
        except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL byte: reported when it is loaded
            return "file:" + raw
    try:
        return "url:" + str(httpx.URL(raw).copy_with(fragment=None))
    except Exception:  # noqa: BLE001 - a malformed URL is reported when it is loaded
        return "url:" + raw


def _human_bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1_000:
        return f"{n / 1_000:g} kB"
    return f"{n} bytes"


# ---------------------------------------------------------------------------------------------------------- URLs


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def url_problem(url: str) -> str:
    """What is wrong with one entry given as a URL, naming it ("" when it is a well-formed URL).

    The scheme is checked first, so that text that is no URL at all ("hello world", "example.com/page") is told
    what a URL starts with rather than that it holds a space. A scheme other than http(s) is the fetch guard's to
    refuse."""
    if not url:
        return "a URL is empty"
    if not _SCHEME.match(url):
        return f"URL {url!r} must start with http:// or https://"
    if any(c.isspace() for c in url):
        return f"URL {url!r} contains white space (write a space in a URL as %20)"
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except httpx.InvalidURL as exc:
        return f"URL {url!r} is malformed ({exc})"
    if parsed.scheme in ("http", "https") and not parsed.host:
        return f"URL {url!r} has no host name"
    if port is not None and not 0 < port < 65536:
        return f"URL {url!r} has port {port}, out of range"
    return ""


def _fetch_url(source: Source, client: httpx.Client, config: FetchConfig) -> None:
    url = source.input.strip()
    problem = url_problem(url)
    if problem:
        raise SourceError(problem)
    parsed = httpx.URL(url)
    check_url(parsed, config.allow_private_urls, config.allowed_networks)
    parsed = parsed.copy_with(fragment=None)

    limit = config.max_bytes
    too_big = f"page larger than {_human_bytes(limit)} limit"
    # httpx's timeouts are per step; the fetch guard's deadline bounds every step of the page, redirects included (the
    # check in the loop below also stops a body that arrives in one fast stream of chunks).
    ends = time.monotonic() + config.total_timeout_s
    headers = {"Accept": _ACCEPT, "Accept-Encoding": ", ".join(readable_encodings())}
    with deadline(config.total_timeout_s), client.stream("GET", parsed, headers=headers) as response:
        source.final_url = str(response.url)
        if response.status_code >= 400:
            raise SourceError(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
        media_type, charset = _parse_content_type(response.headers.get("content-type", ""))
        source.content_type = media_type
        kind = CONTENT_TYPES.get(media_type) if media_type else None
        if media_type and kind is None:
            raise SourceError(f"unsupported content type {media_type}")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise SourceError(f"{too_big} (Content-Length {int(length)} bytes)")
        body = _read_body(response, config, ends)
    source.bytes = len(body)
    if kind is None:  # no Content-Type header: look at the bytes
        kind = sniff(bytes(body))
        source.content_type = {"html": "text/html", "pdf": "application/pdf"}.get(kind, "text/plain")
    source.title, source.text = extract(bytes(body), kind, charset, source.final_url or url)


_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9,application/pdf;q=0.8,*/*;q=0.1"
_PIECE = 64 * 1024  # the most one decoding step may produce: a compressed body is decoded in pieces this large


def _read_body(response: httpx.Response, config: FetchConfig, ends: float) -> bytes:
    """The body as its Content-Encoding decodes it, refused once the decoded bytes pass ``config.max_bytes``.

    Decoding is ours, not httpx's, which inflates each chunk it receives in one go: 64 kB of a gzip bomb come out
    as 64 MB, and a brotli or doubly gzipped body of a few kB as gigabytes. Here every layer yields at most
    ``_PIECE`` bytes at a time, so memory stays near the limit whatever the ratio."""
    limit = config.max_bytes
    encodings = [e.strip().lower() for e in response.headers.get("content-encoding", "").split(",") if e.strip()]
    received = 0

    def raw() -> Iterator[bytes]:
        nonlocal received
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > limit:
                raise SourceError(
                    f"page larger than {_human_bytes(limit)} limit (stopped reading after {received} bytes)"
                )
            if time.monotonic() > ends:
                raise SourceError(_deadline_message(config))
            yield chunk

    pieces = raw()
    for name in reversed([e for e in encodings if e != "identity"]):  # the last encoding applied is undone first
        pieces = _decoder(name)(pieces)
    body = bytearray()
    for piece in pieces:
        body += piece
        if len(body) > limit:
            if not encodings:
                raise SourceError(
                    f"page larger than {_human_bytes(limit)} limit (stopped reading after {len(body)} bytes)"
                )
            raise SourceError(
                f"page larger than {_human_bytes(limit)} limit once decoded (Content-Encoding {', '.join(encodings)}: "
                f"stopped after {len(body)} bytes decoded from {received} received)"
            )
        if time.monotonic() > ends:
            raise SourceError(_deadline_message(config))
    return bytes(body)


def readable_encodings() -> list[str]:
    """The content encodings ``_read_body`` decodes in bounded pieces (brotli only where its decoder can be
    bounded, brotli >= 1.2)."""
    return ["gzip", "deflate", "br"] if _brotli() is not None else ["gzip", "deflate"]


def _brotli() -> Any:
    """The brotli module, if installed with a decoder whose output can be bounded."""
    try:
        import brotli

        brotli.Decompressor().process(b"", output_buffer_limit=1)
    except (ImportError, TypeError, AttributeError):
        return None
    return brotli


def _decoder(name: str) -> Callable[[Iterator[bytes]], Iterator[bytes]]:
    """The bounded decoder of one content encoding; an encoding kinject cannot read is refused by name."""
    if name in ("gzip", "x-gzip"):
        return lambda pieces: _inflate(pieces, name, zlib.MAX_WBITS | 16)
    if name == "deflate":
        return lambda pieces: _inflate(pieces, name, zlib.MAX_WBITS)
    if name == "br" and _brotli() is not None:
        return _unbrotli
    raise SourceError(f"unsupported content encoding {name!r} (kinject reads {', '.join(readable_encodings())})")


def _inflate(pieces: Iterator[bytes], name: str, wbits: int) -> Iterator[bytes]:
    """Inflate zlib, gzip or raw deflate data (servers send both of the last two as "deflate"), ``_PIECE`` at most
    at a time."""
    decoder, started = zlib.decompressobj(wbits), False
    try:
        for data in pieces:
            while data:
                try:
                    out = decoder.decompress(data, _PIECE)
                except zlib.error:
                    if started or wbits != zlib.MAX_WBITS:
                        raise
                    decoder, wbits = zlib.decompressobj(-zlib.MAX_WBITS), -zlib.MAX_WBITS  # raw deflate
                    continue
                started = True
                data = decoder.unconsumed_tail
                yield out
        yield decoder.flush()
    except zlib.error as exc:
        raise SourceError(f"malformed {name}-encoded body ({exc})") from None


def _unbrotli(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Decode brotli data, ``_PIECE`` at most at a time."""
    brotli = _brotli()
    decoder = brotli.Decompressor()
    try:
        for data in pieces:
            yield decoder.process(data, output_buffer_limit=_PIECE)
            while not decoder.can_accept_more_data():
                yield decoder.process(b"", output_buffer_limit=_PIECE)
    except brotli.error as exc:
        raise SourceError(f"malformed br-encoded body ({exc})") from None


def _parse_content_type(header: str) -> tuple[str, str | None]:
    """``text/html; charset=ISO-8859-1`` -> ("text/html", "iso-8859-1")."""
    parts = header.split(";")
    media_type = parts[0].strip().lower()
    charset = None
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").lower() or None
    return media_type, charset


# --------------------------------------------------------------------------------------------------------- files


def _read_file(source: Source, config: FetchConfig) -> None:
    """Read a local (or uploaded) file, refused by its size before it is read and read no further than the limit."""
    path = Path(source.input.strip()).expanduser()
    kind = FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FILE_TYPES))
        raise SourceError(f"unsupported file type {path.suffix or '(no extension)'!r} (supported: {known})")
    limit = config.max_file_bytes
    too_big = f"file larger than {_human_bytes(limit)} limit"
    with _open_regular_file(path) as (fh, size):
        if size > limit:
            raise SourceError(f"{too_big} ({size} bytes)")
        data = fh.read(limit + 1)  # the file may have grown since stat
    if len(data) > limit:
        raise SourceError(f"{too_big} (it grew while being read)")
    source.bytes = len(data)
    source.final_url = path.resolve().as_uri()
    source.content_type = {"html": "text/html", "pdf": "application/pdf"}.get(
        kind, "text/markdown" if path.suffix.lower() == ".md" else "text/plain"
    )
    source.title, source.text = extract(data, kind, None, None)
    if not source.title and kind != "html":
        source.title = path.stem


_NOT_REGULAR = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


@contextlib.contextmanager
def _open_regular_file(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """(the open file, its size) of ``path``, which must be a regular file; a symbolic link is followed only to a
    file inside the folder the link is in (a link in a downloaded folder must not read ~/.aws or /etc).

    The file is opened without blocking and judged by its open descriptor, not its name: a FIFO cannot hang the
    open, and nothing swapped in under the name between the check and the read gets read."""
    if "\x00" in str(path):
        raise SourceError(f"invalid file name {str(path)!r}: it holds a NUL byte")
    if path.is_symlink():
        try:
            target, folder = path.resolve(), path.parent.resolve()
        except (OSError, RuntimeError) as exc:  # a loop of links
            raise SourceError(f"cannot follow the symbolic link {path}: {exc}") from None
        if not target.is_relative_to(folder):
            raise SourceError(
                f"refused: {path} is a symbolic link to {target}, outside its folder {folder} (give the file's own "
                "path to read it)"
            )
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SourceError(f"file not found: {path}") from None
    except PermissionError:
        raise SourceError(f"permission denied: {path}") from None
    except OSError as exc:  # a socket (ENXIO), a loop of links (ELOOP) ...
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        what = _NOT_REGULAR.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise SourceError(f"not a file: {path} is {what}")
    with os.fdopen(descriptor, "rb") as fh:
        yield fh, info.st_size
