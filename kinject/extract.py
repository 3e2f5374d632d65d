"""Extraction: a fetched body (HTML, text, Markdown or PDF) to its title and main text (stage: sources).

HTML is decoded with the declared or detected charset and reduced to the article text by trafilatura (the page's
plain visible text when trafilatura finds nothing); PDF pages and text files keep their paragraphs. No network:
``bench/extraction.py`` scores this module alone.
"""

from __future__ import annotations

import codecs
import io
import re


class SourceError(Exception):
    """A source that cannot be used; the message is the row's error."""


def sniff(body: bytes) -> str:
    """The kind of an unlabelled body: "pdf", "html" or "text"."""
    head = body[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "pdf"
    if head.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<body" in body[:4096].lower():
        return "html"
    return "text"


def extract(body: bytes, kind: str, charset: str | None, url: str | None) -> tuple[str, str]:
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
