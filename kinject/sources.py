"""Sources: fetch URLs and read local files, and extract each page's main text.

URLs go through the SSRF-guarded client of ``kinject.guard``; bodies are streamed with a byte cap, decoded with the
declared or detected charset, and reduced to the article text by trafilatura (the page's plain visible text when
trafilatura finds nothing). Every input gives exactly one ``Source`` row; a bad input becomes an error row with a
specific message and never stops the others.
"""

from __future__ import annotations

import codecs
import io
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from kinject.config import FetchConfig
from kinject.guard import BlockedURLError, check_url, guarded_client
from kinject.progress import Progress

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


class SourceError(Exception):
    """A source that cannot be used; the message is the row's error."""


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
                _read_file(source)
            if not source.text.strip():
                raise SourceError("no text could be extracted")
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dedup_key(kind: str, raw: str) -> str:
    raw = raw.strip()
    if kind == "file":
        return "file:" + str(Path(raw).expanduser().resolve())
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


def _fetch_url(source: Source, client: httpx.Client, config: FetchConfig) -> None:
    url = source.input.strip()
    if not url or any(c.isspace() for c in url):
        raise SourceError(f"malformed URL {url!r}: {'empty' if not url else 'contains white space'}")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except httpx.InvalidURL as exc:
        raise SourceError(f"malformed URL {url!r}: {exc}") from None
    if not parsed.scheme:
        raise SourceError(f"malformed URL {url!r}: it needs to start with http:// or https://")
    if parsed.scheme in ("http", "https") and not parsed.host:
        raise SourceError(f"malformed URL {url!r}: no host name")
    if port is not None and not 0 < port < 65536:
        raise SourceError(f"malformed URL {url!r}: port {port} is out of range")
    check_url(parsed, config.allow_private_urls, config.allowed_networks)
    parsed = parsed.copy_with(fragment=None)

    limit = config.max_bytes
    too_big = f"page larger than {_human_bytes(limit)} limit"
    deadline = time.monotonic() + config.total_timeout_s  # httpx's timeout is per read; this bounds the whole page
    with client.stream("GET", parsed, headers={"Accept": _ACCEPT}) as response:
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
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise SourceError(f"{too_big} (stopped reading after {len(body)} bytes)")
            if time.monotonic() > deadline:
                raise SourceError(f"timeout: page not received within {config.total_timeout_s:g} s")
    source.bytes = len(body)
    if kind is None:  # no Content-Type header: look at the bytes
        kind = _sniff(bytes(body))
        source.content_type = {"html": "text/html", "pdf": "application/pdf"}.get(kind, "text/plain")
    source.title, source.text = _extract(bytes(body), kind, charset, source.final_url or url)


_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,text/markdown;q=0.9,application/pdf;q=0.8,*/*;q=0.1"


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


def _sniff(body: bytes) -> str:
    head = body[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "pdf"
    if head.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<body" in body[:4096].lower():
        return "html"
    return "text"


# --------------------------------------------------------------------------------------------------------- files


def _read_file(source: Source) -> None:
    path = Path(source.input.strip()).expanduser()
    kind = FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FILE_TYPES))
        raise SourceError(f"unsupported file type {path.suffix or '(no extension)'!r} (supported: {known})")
    if not path.exists():
        raise SourceError(f"file not found: {path}")
    if not path.is_file():
        raise SourceError(f"not a file: {path}")
    data = path.read_bytes()
    source.bytes = len(data)
    source.final_url = path.resolve().as_uri()
    source.content_type = {"html": "text/html", "pdf": "application/pdf"}.get(
        kind, "text/markdown" if path.suffix.lower() == ".md" else "text/plain"
    )
    source.title, source.text = _extract(data, kind, None, None)
    if not source.title and kind != "html":
        source.title = path.stem


# ---------------------------------------------------------------------------------------------------- extraction


def _extract(body: bytes, kind: str, charset: str | None, url: str | None) -> tuple[str, str]:
    """(title, text) from a body of ``kind`` "html", "text" or "pdf"."""
    if kind == "pdf":
        return _pdf_text(body)
    text = decode_bytes(body, charset, html=kind == "html")
    if kind == "html":
        return extract_main_text(text, url)
    return _markdown_title(text), _paragraphs(text.splitlines())


def _pdf_text(body: bytes) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted:
            raise SourceError("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title", "") or "").strip()
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"unreadable PDF ({exc})") from None
    # Pages are paragraphs at least; blank lines inside a page keep theirs.
    return title, "\n\n".join(p for page in pages if (p := _paragraphs(page.splitlines())))


def _markdown_title(text: str) -> str:
    for line in text.splitlines()[:20]:
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def _paragraphs(lines: list[str]) -> str:
    """Lines -> paragraphs separated by one blank line; runs of non-blank lines stay together."""
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return "\n\n".join(paragraphs)


# WHATWG: pages that say latin-1 or ascii are decoded as windows-1252 by every browser (curly quotes, euro sign).
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def decode_bytes(body: bytes, charset: str | None = None, html: bool = True) -> str:
    """Decode a page: BOM, else the declared charset (header, then ``<meta>``), else UTF-8, else detection."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(encoding, errors="replace")
    declared = [charset] if charset else []
    if html:
        declared += [m.decode("ascii").lower() for m in _META_CHARSET.findall(body[:4096])]
    for name in declared:
        name = _CHARSET_ALIASES.get(name.lower(), name.lower())
        try:
            codecs.lookup(name)
        except LookupError:
            continue
        return body.decode(name, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body).best()
    if best is not None:
        return str(best)
    return body.decode("cp1252", errors="replace")


# Below this share of the recall-oriented extraction's words, the precise one has probably missed the article
# (bench/extraction.py: any value in 0.1..0.5 scores the same; 0.3 sits in the middle).
_PRECISE_MIN_SHARE = 0.3


def extract_main_text(html: str, url: str | None = None) -> tuple[str, str]:
    """(title, main text) of an HTML page; paragraphs are separated by one blank line.

    trafilatura extracts the article twice, favouring precision and favouring recall (comments left out both
    times); the precise text wins unless it has under 30% of the other's words, which happens when it missed the
    article. When both are empty, the page's visible text is used (no script or style). On the 181 pages of
    bench/extraction.py this scores F1 0.969 against 0.953 for trafilatura's defaults.
    """
    import trafilatura

    def run(**options: bool) -> tuple[str, str]:
        document = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False, **options)
        if document is None:
            return "", ""
        return (getattr(document, "title", None) or ""), (getattr(document, "text", None) or "")

    title, text = run(favor_precision=True)
    recall_title, recall_text = run(favor_recall=True)
    if len(text.split()) < _PRECISE_MIN_SHARE * len(recall_text.split()):
        text = recall_text
    title = title or recall_title
    if not text.strip():
        text = _visible_text(html)
    if not title:
        title = _html_title(html)
    # trafilatura's text output puts each block (paragraph, heading, list item) on its own line.
    return " ".join(title.split()), _paragraphs(text.replace("\n", "\n\n").splitlines())


_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas")
_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 "
    "header hr li main nav ol p pre section table td th tr ul".split()
)


def _visible_text(html: str) -> str:
    """All text a reader would see (no script or style), one line per block element."""
    import lxml.etree
    import lxml.html

    try:
        root = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return ""
    for element in list(root.iter(*_DROP_TAGS)):
        if element.getparent() is not None:
            element.drop_tree()  # keeps the tail text, which belongs to the parent
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag in _BLOCK_TAGS:
            element.text = "\n" + (element.text or "")
            element.tail = "\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().split("\n"))
    return "\n".join(line for line in lines if line)


def _html_title(html: str) -> str:
    match = re.search(r"<title[^>]*>(.*?)</title>", html, re.IGNORECASE | re.DOTALL)
    if not match:
        return ""
    import html as html_lib

    return " ".join(html_lib.unescape(match.group(1)).split())
