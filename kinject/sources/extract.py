"""Extraction: a fetched body (HTML, text, Markdown or PDF) to its title and main text (stage: sources).

HTML is decoded with the declared or detected charset and reduced to the article text by trafilatura (the page's
plain visible text, site chrome left out, when trafilatura finds nothing); PDF pages and text files keep their
paragraphs. Junk never passes as text: a body that decodes to control or replacement characters, or text without
real words, is refused with a message that says so (``check_text``), and a page that gives no text says why (too
deep for the parser, empty, or only boilerplate). What a body may cost to read is bounded besides its size: HTML by
its elements, a PDF by its pages and the seconds its text takes. No network: ``bench/extraction.py`` scores this
module alone.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Iterator


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
    """(title, text) from a body of ``kind`` "html", "text" or "pdf".

    Raises SourceError for a body that is binary data rather than text, and for a page that gives no text (the
    message says why). The text returned may still be junk: ``check_text`` judges it.
    """
    if kind == "pdf":
        return _pdf_text(body)
    text = decode_bytes(body, charset, html=kind == "html")
    if (share := bad_char_share(text)) > MAX_BAD_CHAR_SHARE:
        raise SourceError(_binary_message(share))
    text = _CONTROL_CHARS.sub("", text)  # a few strays would make the HTML parser refuse the whole page
    if kind == "html" and (elements := len(_TAG.findall(text))) > MAX_HTML_ELEMENTS:
        raise SourceError(
            f"HTML of {elements:,} elements, more than the {MAX_HTML_ELEMENTS:,}-element limit (its extraction would "
            "take minutes and gigabytes): save the text that matters as a .txt file"
        )
    if kind == "html":
        title, main = extract_main_text(text, url)
        # trafilatura takes a cookie banner for the article when the page has nothing else: a short text on a page
        # whose every visible word sits in site chrome is no article.
        chrome_only = count_words(main) < BOILERPLATE_MAX_WORDS and not _visible_text(text, drop_boilerplate=True)
        if not main.strip() or chrome_only:
            raise SourceError(f"no text could be extracted: {why_no_text(text)}")
        return title, main
    return _markdown_title(text), _paragraphs(text.splitlines())


# Text is refused when more than this share of its characters are control, replacement, surrogate or private-use
# characters (random bytes decoded as windows-1252 give about 14%; real text next to none), or when less than
# MIN_WORD_SHARE of its non-space characters are words (random bytes: under 1%; English prose: about 80%, technical
# pages full of numbers and model names: 60% and up).
MAX_BAD_CHAR_SHARE = 0.05
MIN_WORD_SHARE = 0.3
# Extraction costs about 130 us and 2 kB of memory per element (measured on a tag soup: 250,000 elements in 2.2 MB
# took 33 s and 550 MB); the byte limit alone would let 5 MB of tags cost minutes and over a gigabyte.
MAX_HTML_ELEMENTS = 250_000
_TAG = re.compile(r"<[A-Za-z]")
BOILERPLATE_MAX_WORDS = 50  # a page whose text is all site chrome is refused only when that text is this short
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd\ud800-\udfff\ue000-\uf8ff]")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LETTERS = re.compile(r"[^\W\d_]")
_EDGE_PUNCTUATION = "\"'“”‘’«»()[]{}<>.,;:!?…—–-*_#/\\|"


def bad_char_share(text: str) -> float:
    """The share of ``text`` that is control (not white space), replacement, surrogate or private-use characters."""
    return len(_BAD_CHARS.findall(text)) / len(text) if text else 0.0


def _is_word(token: str) -> bool:
    """A token that reads as a word: letters (any script, digits fewer than letters, punctuation inside allowed, as
    in Japanese or "p5.48xlarge"), and no control or symbol character, which mojibake and binary are full of."""
    letters = len(_LETTERS.findall(token))
    if not letters or letters < sum(c.isdigit() for c in token):
        return False
    return not any(unicodedata.category(c)[0] in "CS" for c in token)


def word_share(text: str) -> float:
    """The share of the non-space characters of ``text`` that are in words (see ``_is_word``)."""
    tokens = text.split()
    total = sum(len(t) for t in tokens)
    words = sum(len(t) for t in tokens if _is_word(t.strip(_EDGE_PUNCTUATION)))
    return words / total if total else 0.0


# Scripts written without spaces between words (Chinese, Japanese): their words are counted from characters.
_UNSPACED = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
UNSPACED_CHARS_PER_WORD = 2  # a Chinese or Japanese word is one to three characters, about two on average


def count_words(text: str) -> int:
    """Words in ``text``: white-space separated tokens with at least one letter; a token of Chinese or Japanese
    counts its characters (two to a word), since those scripts put no spaces between words."""
    words = 0
    for token in text.split():
        if unspaced := len(_UNSPACED.findall(token)):
            words += max(1, round(unspaced / UNSPACED_CHARS_PER_WORD))
        elif any(c.isalpha() for c in token):
            words += 1
    return words


def _binary_message(share: float) -> str:
    return f"binary data, not text: {share:.0%} of its characters are control or replacement characters"


def check_text(text: str) -> None:
    """Raise SourceError when extracted ``text`` is junk: mostly control or replacement characters, or no real
    words (binary data that decoded to something, mojibake, a dump of numbers)."""
    if (share := bad_char_share(text)) > MAX_BAD_CHAR_SHARE:
        raise SourceError(_binary_message(share))
    if (share := word_share(text)) < MIN_WORD_SHARE:
        raise SourceError(
            f"no real words: only {share:.0%} of the text is words (binary data, a garbled encoding or only numbers)"
        )


_quiet_lock = threading.Lock()
_quiet = {"count": 0, "level": logging.NOTSET}


@contextlib.contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's logger: it logs what it repairs ("EOF marker not found") as warnings, which reach stderr as
    stray lines, while the source's row says what matters. Counted, since sources are read in threads at once."""
    logger = logging.getLogger("pypdf")
    with _quiet_lock:
        if _quiet["count"] == 0:
            _quiet["level"] = logger.level
            logger.setLevel(logging.CRITICAL + 1)
        _quiet["count"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet["count"] -= 1
            if _quiet["count"] == 0:
                logger.setLevel(_quiet["level"])


# A PDF is small on disk for what it costs to read: thousands of pages can share one content stream, each page
# taking seconds to parse, so the pages read and the time spent reading them are bounded.
MAX_PDF_PAGES = 2000
MAX_PDF_SECONDS = 120.0


def _pdf_text(body: bytes) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if b"%PDF-" not in body[:1024]:  # a PDF's header, which readers look for in its first 1024 bytes
        if sniff(body) == "html":
            raise SourceError("not a PDF: it holds HTML (an error or login page in place of the document?)")
        raise SourceError("not a PDF: no PDF header (%PDF-) in its first 1024 bytes")
    ends = time.monotonic() + MAX_PDF_SECONDS
    try:
        with _quiet_pypdf():
            reader = PdfReader(io.BytesIO(body))
            if reader.is_encrypted:
                raise SourceError("encrypted PDF")
            count = len(reader.pages)
            if count > MAX_PDF_PAGES:
                raise SourceError(f"PDF of {count} pages, more than the {MAX_PDF_PAGES}-page limit: split it")
            pages = []
            for number, page in enumerate(reader.pages, 1):
                pages.append(page.extract_text() or "")
                if time.monotonic() > ends and number < count:
                    raise SourceError(
                        f"PDF too slow to read: {number} of its {count} pages took over the {MAX_PDF_SECONDS:g} s "
                        "limit (pages of heavy or repeated drawing commands)"
                    )
            title = str((reader.metadata or {}).get("/Title", "") or "").strip()
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SourceError(f"unreadable PDF ({exc})") from None
    # Pages are paragraphs at least; blank lines inside a page keep theirs.
    text = "\n\n".join(p for page in pages if (p := _paragraphs(page.splitlines())))
    if not text:
        raise SourceError(f"no text could be extracted: none of its {count} pages holds text (scanned images?)")
    return title, text


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
    if (text := _utf16_without_bom(body)) is not None:
        return text  # before UTF-8, which decodes UTF-16 of ASCII text too, each NUL a character
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body).best()
    if best is not None:
        return str(best)
    return body.decode("cp1252", errors="replace")


def _utf16_without_bom(body: bytes) -> str | None:
    """UTF-16 text without a BOM (as some Windows tools write it), or None: in its first 4 KB a third or more of
    the high bytes are NUL (Latin script) and almost none of the low ones, and the whole decodes cleanly."""
    head = body[:4096]
    if len(head) < 4 or len(body) % 2:
        return None
    half = len(head) // 2
    even, odd = head[0::2].count(0), head[1::2].count(0)
    for nuls, others, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if nuls >= 0.3 * half and others <= 0.05 * half:
            try:
                text = body.decode(encoding)
            except UnicodeDecodeError:
                return None
            return text if bad_char_share(text) <= MAX_BAD_CHAR_SHARE else None
    return None


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
        text = _visible_text(html, drop_boilerplate=True)
    if not title:
        title = _html_title(html)
    # trafilatura's text output puts each block (paragraph, heading, list item) on its own line.
    return " ".join(title.split()), _paragraphs(text.replace("\n", "\n\n").splitlines())


_DROP_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas")
_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd div dl dt fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 "
    "header hr li main nav ol p pre section table td th tr ul".split()
)


# Site chrome a reader skips: these elements, and any whose id, class or role names a notice, menu or bar.
_BOILERPLATE_TAGS = frozenset("nav header footer aside form button dialog menu".split())
_BOILERPLATE_NAMES = re.compile(
    r"cookies?|consent|gdpr|banner|popup|modal|newsletter|subscribe|nav|navbar|navigation|menu|breadcrumbs?|"
    r"share|social|footer|header|sidebar|contentinfo",
    re.IGNORECASE,
)
# A class that states a layout's state ("has-sidebar", "is-menu-open") marks the page around the chrome, not it.
_STATE_PREFIXES = ("has", "is", "with", "no", "show", "hide", "open")
_STATE_SUFFIXES = ("open", "opened", "closed", "fixed", "sticky", "active", "visible", "hidden", "collapsed")


def _names_chrome(token: str) -> bool:
    """Whether one id/class/role token names a piece of chrome: the token itself ("footer"), its last part
    ("site-header", "cookie_banner") or its first ("nav-links"), unless it states a layout's state ("has-sidebar",
    "header-fixed")."""
    parts = [p for p in re.split(r"[-_]+", token.lower()) if p]
    if not parts or parts[0] in _STATE_PREFIXES:
        return False
    if _BOILERPLATE_NAMES.fullmatch(parts[-1]):
        return True
    return bool(_BOILERPLATE_NAMES.fullmatch(parts[0])) and parts[-1] not in _STATE_SUFFIXES


def _is_boilerplate(element) -> bool:
    if element.tag in ("html", "body", "main", "article"):
        return False
    if element.tag in _BOILERPLATE_TAGS:
        return True
    marks = " ".join(element.get(a, "") for a in ("id", "class", "role"))
    return any(_names_chrome(token) for token in marks.split())


def _visible_text(html: str, drop_boilerplate: bool = False) -> str:
    """All text a reader would see (no script or style), one line per block element; ``drop_boilerplate`` also
    leaves out navigation, headers, footers, forms and cookie or newsletter notices."""
    import lxml.etree
    import lxml.html

    try:
        root = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return ""
    for element in list(root.iter(*_DROP_TAGS)):
        if element.getparent() is not None:
            element.drop_tree()  # keeps the tail text, which belongs to the parent
    if drop_boilerplate:
        for element in list(root.iter()):
            if isinstance(element.tag, str) and element.getparent() is not None and _is_boilerplate(element):
                element.drop_tree()
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


# lxml's HTML parser (libxml2) keeps at most this many levels of nesting; text nested deeper is lost.
PARSER_MAX_DEPTH = 255


def nesting_depth(html: str) -> int:
    """How deep the page's elements nest (parsed without libxml2's depth limit; it still stops near 2048)."""
    import lxml.etree

    try:
        root = lxml.etree.fromstring(html.encode("utf-8"), lxml.etree.HTMLParser(encoding="utf-8", huge_tree=True))
    except (ValueError, lxml.etree.ParserError, lxml.etree.XMLSyntaxError):
        return 0
    if root is None:
        return 0
    deepest, stack = 0, [(root, 0)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element)
    return deepest


def why_no_text(html: str) -> str:
    """Why a page gave no text: too deep for the parser, only boilerplate, or empty."""
    depth = nesting_depth(html)
    if depth >= PARSER_MAX_DEPTH:
        shown = f"{depth}" if depth < 2000 else "about 2000 or more"
        return f"too deep: its HTML nests {shown} levels, and the parser gives up at {PARSER_MAX_DEPTH}"
    visible = _visible_text(html)
    if visible.strip():
        first = visible.splitlines()[0]
        return (
            f"only boilerplate: its {count_words(visible)} visible words are navigation, a header or footer, or a "
            f"cookie or newsletter notice (starting {first[:60]!r}), no article"
        )
    return "empty: the page has no visible text (only markup and scripts; a page built by JavaScript needs a browser)"
