"""Fetching and reading sources: main-text extraction on the sample pages, one specific error row per bad input."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import lxml.html
import pytest
from httpserver import CP1252_TEXT, LATIN1_TEXT, MARKDOWN_BODY, NetJail, SiteServer, loopback

from kinject.runtime.progress import RecordingProgress
from kinject.settings.sources import FetchConfig
from kinject.sources.extract import decode_bytes, extract_main_text
from kinject.sources.fetch import Source, fetch_sources

SAMPLE_PAGES = [
    "bedrock-agents.html",
    "ec2-p5.html",
    "entity-resolution.html",
    "glue-codewhisperer.html",
    "opensearch-vector-engine.html",
    "vector-stores.html",
]


@pytest.fixture(autouse=True)
def jail(monkeypatch: pytest.MonkeyPatch) -> NetJail:
    return NetJail(monkeypatch)


@pytest.fixture
def config() -> FetchConfig:
    return FetchConfig(allow_private_urls=True, timeout_s=0.5, total_timeout_s=2, max_bytes=100_000, max_redirects=3)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _article_and_chrome(page: Path) -> tuple[str, list[str], list[str]]:
    """(h1, article sentences, chrome texts) of a sample page, read from its HTML."""
    root = lxml.html.fromstring(page.read_text(encoding="utf-8"))
    h1 = _norm(root.xpath("//article//h1")[0].text_content())
    # The byline is metadata (author, date), which trafilatura sets aside on purpose; the date is in the body too.
    sentences = [_norm(p.text_content()) for p in root.xpath("//article//p[not(@class='byline')]")]
    chrome = [
        _norm(e.text_content())
        for e in root.xpath("//*[@id='cookie-banner'] | //nav | //nav//a | //aside//h3 | //aside//li | //footer//p")
    ]
    return h1, sentences, chrome


def test_sample_pages_keep_the_article_and_drop_the_chrome(site: str, sample_dir: Path, config: FetchConfig) -> None:
    progress = RecordingProgress()
    rows = fetch_sources([f"{site}/{name}" for name in SAMPLE_PAGES], [], config, progress)

    assert [r.input for r in rows] == [f"{site}/{name}" for name in SAMPLE_PAGES]
    for name, row in zip(SAMPLE_PAGES, rows, strict=True):
        assert row.status == "ok", row.error
        h1, sentences, chrome = _article_and_chrome(sample_dir / name)
        paragraphs = [_norm(p) for p in row.text.split("\n\n")]
        assert row.title == h1
        assert h1 in paragraphs
        for sentence in sentences:
            assert sentence in paragraphs, f"{name}: lost {sentence!r}"
        for text in chrome:
            assert text not in row.text, f"{name}: kept chrome {text!r}"
        for word in ("cookies", "Accept all", "Related posts", "All rights reserved", "Follow us", "Sign in"):
            assert word not in row.text
        assert row.kind == "url"
        assert row.final_url == f"{site}/{name}"
        assert row.content_type == "text/html"
        assert row.bytes == (sample_dir / name).stat().st_size
        assert datetime.fromisoformat(row.fetched_at).utcoffset().total_seconds() == 0

    assert progress.events[0] == ("start", ("fetch", len(SAMPLE_PAGES)))
    advances = [e for e in progress.events if e[0] == "advance"]
    assert len(advances) == len(SAMPLE_PAGES)
    assert all(info == {"status": "ok"} for _, (n, info) in advances)
    assert progress.events[-1] == ("finish", None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_bad_input_gets_its_own_specific_row(site: str, config: FetchConfig, site_server: SiteServer) -> None:
    good = f"{site}/ec2-p5.html"
    cases: list[tuple[str, str]] = [
        (good, ""),
        ("not a url", "URL 'not a url' must start with http:// or https://"),
        ("example.com/page", "URL 'example.com/page' must start with http:// or https://"),
        ("http://a page/x", "URL 'http://a page/x' contains white space"),
        ("http://[::1/x", "URL 'http://[::1/x' is malformed"),
        ("https://", "URL 'https://' has no host name"),
        ("http://nowhere.invalid/page", "unknown host 'nowhere.invalid'"),
        (f"http://127.0.0.1:{_closed_port()}/", "connection refused by 127.0.0.1"),
        (f"{site}/slow", "timeout: no data for 0.5 s"),
        (f"{site}/trickle", "timeout: page not received within 2 s"),
        (f"{site}/404", "HTTP 404 Not Found"),
        (f"{site}/500", "HTTP 500 Internal Server Error"),
        (f"{site}/binary", "unsupported content type image/png"),
        (f"{site}/huge", "page larger than 100 kB limit (Content-Length 200"),
        (f"{site}/huge-stream", "page larger than 100 kB limit (stopped reading after"),
        (f"{site}/empty", "no text could be extracted"),
        (f"{site}/redirect-loop", "too many redirects (more than 3)"),
        ("ftp://127.0.0.1/file.txt", "refused: scheme 'ftp' is not http or https"),
        (f"  {good}#section-2 ", f"same as input 1 ({good})"),
        (f"{site}/vector-stores.html", ""),
    ]
    rows = fetch_sources([url for url, _ in cases], [], config)

    assert len(rows) == len(cases)
    for (url, expected), row in zip(cases, rows, strict=True):
        assert row.input == url
        if expected:
            assert row.status in ("error", "duplicate"), url
            assert row.error.startswith(expected), (url, row.error)
            assert row.text == ""
        else:
            assert row.status == "ok", (url, row.error)
            assert row.text
    assert rows[-2].status == "duplicate"
    # The size cap stops reading: the streaming server was cut off long before its 20 MB.
    assert site_server.huge_sent < 10_000_000


def test_bad_inputs_never_raise(config: FetchConfig) -> None:
    rows = fetch_sources(["", "http://", "::::", "http://exa mple.com/"], ["", "/nonexistent/x.html"], config)
    assert [r.status for r in rows] == ["error"] * 6
    assert all(r.error for r in rows)


@pytest.mark.parametrize("route", ["/latin1", "/latin1-header", "/latin1-undeclared"])
def test_non_utf8_pages_decode_right(site: str, config: FetchConfig, route: str) -> None:
    (row,) = fetch_sources([site + route], [], config)
    assert row.status == "ok", row.error
    assert row.title == "Café à Zürich"
    assert LATIN1_TEXT in row.text
    if route != "/latin1-header":
        assert CP1252_TEXT in row.text
    assert "crêpes façon Besançon" in row.text
    assert "\ufffd" not in row.text


def test_text_markdown_and_untyped_responses(site: str, config: FetchConfig) -> None:
    text, markdown, untyped = fetch_sources([f"{site}/text", f"{site}/markdown", f"{site}/no-type"], [], config)
    assert text.status == markdown.status == untyped.status == "ok"
    assert text.text == "Plain text first paragraph about the llamas of Lima.\n\nSecond paragraph: they like rain."
    assert text.content_type == "text/plain"
    assert markdown.title == "Llama notes"
    assert markdown.text == MARKDOWN_BODY.strip()
    assert untyped.text == "A page that forgot its type."
    assert untyped.content_type == "text/html"


def test_redirects_are_followed_and_reported(site: str, site2: str, config: FetchConfig) -> None:
    target = f"{site2}/bedrock-agents.html"
    (row,) = fetch_sources([f"{site}/redirect-to?url={quote(target, safe='')}"], [], config)
    assert row.status == "ok", row.error
    assert row.final_url == target
    assert "Agents for Amazon Bedrock" in row.text


def test_guard_applies_to_fetch_sources(site: str, site2: str) -> None:
    strict = FetchConfig(timeout_s=1, allowed_networks=["127.0.0.1/32"])
    target = f"{site2}/bedrock-agents.html"
    ok, redirected = fetch_sources(
        [f"{site}/ec2-p5.html", f"{site}/redirect-to?url={quote(target, safe='')}"], [], strict
    )
    assert ok.status == "ok"
    assert redirected.status == "error"
    assert redirected.error == "refused: 127.0.0.2 is a loopback address (use --allow-private-urls to allow)"


def _minimal_pdf(lines: list[str], title: str) -> bytes:
    """A one-page PDF with Helvetica text lines (hand-written objects and a correct xref table)."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        f"<< /Title ({title}) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_local_files(tmp_path: Path, sample_dir: Path, config: FetchConfig) -> None:
    html = tmp_path / "page.htm"
    html.write_bytes((sample_dir / "entity-resolution.html").read_bytes())
    latin = tmp_path / "latin.html"
    latin.write_bytes(
        f'<html><head><meta charset="iso-8859-1"><title>Zürich</title></head><body><p>{LATIN1_TEXT}</p>'
        f"<p>{CP1252_TEXT}</p></body></html>".encode("cp1252")
    )
    txt = tmp_path / "notes.txt"
    txt.write_text("First line of notes.\nStill the first paragraph.\n\n\n\nSecond paragraph.\n", encoding="utf-8")
    md = tmp_path / "notes.md"
    md.write_text(MARKDOWN_BODY, encoding="utf-8")
    pdf = tmp_path / "facts.pdf"
    pdf.write_bytes(_minimal_pdf(["The llamas of Lima prefer rain.", "They eat 3 kg of hay a day."], "Llama facts"))
    docx = tmp_path / "report.docx"
    docx.write_bytes(b"PK\x03\x04 not really a docx")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 nothing else")

    files = [html, latin, txt, md, pdf, docx, tmp_path / "missing.md", broken, html]
    rows = fetch_sources([], [str(f) for f in files], config)
    by_name = dict(zip([f.name for f in files[:-1]], rows[:-1], strict=True))

    assert all(r.kind == "file" for r in rows)
    page = by_name["page.htm"]
    assert page.status == "ok" and page.title == "AWS Entity Resolution is generally available"
    assert "cookies" not in page.text and "Related posts" not in page.text
    assert page.final_url == html.resolve().as_uri()
    assert LATIN1_TEXT in by_name["latin.html"].text and CP1252_TEXT in by_name["latin.html"].text
    assert by_name["notes.txt"].text == "First line of notes.\nStill the first paragraph.\n\nSecond paragraph."
    assert by_name["notes.txt"].title == "notes"
    assert by_name["notes.md"].title == "Llama notes"
    assert by_name["notes.md"].content_type == "text/markdown"
    assert by_name["facts.pdf"].status == "ok", by_name["facts.pdf"].error
    assert by_name["facts.pdf"].title == "Llama facts"
    assert "The llamas of Lima prefer rain." in by_name["facts.pdf"].text
    assert "They eat 3 kg of hay a day." in by_name["facts.pdf"].text
    assert by_name["report.docx"].error.startswith("unsupported file type '.docx' (supported: ")
    assert by_name["missing.md"].error.startswith("file not found: ")
    assert by_name["broken.pdf"].status == "error"
    assert by_name["broken.pdf"].error.startswith(("unreadable PDF", "no text could be extracted"))
    assert rows[-1].status == "duplicate" and rows[-1].error == f"same as input 1 ({html})"


def test_urls_come_before_files_in_input_order(site: str, tmp_path: Path, config: FetchConfig) -> None:
    note = tmp_path / "a.txt"
    note.write_text("Some text.", encoding="utf-8")
    rows = fetch_sources([f"{site}/404", f"{site}/ec2-p5.html"], [str(note)], config)
    assert [(r.kind, r.status) for r in rows] == [("url", "error"), ("url", "ok"), ("file", "ok")]
    assert isinstance(rows[0], Source)


def test_extract_main_text_falls_back_to_visible_text() -> None:
    page = (
        "<html><head><title>Short note</title><style>p {color: red}</style><script>var hidden = 1;</script></head>"
        "<body><div>Only one short line here.</div></body></html>"
    )
    title, text = extract_main_text(page)
    assert title == "Short note"
    assert text == "Only one short line here."
    assert extract_main_text("<html><body><script>x()</script></body></html>") == ("", "")


def test_decode_bytes() -> None:
    assert decode_bytes("café".encode()) == "café"
    assert decode_bytes("\ufeffcafé".encode()) == "café"  # BOM
    assert decode_bytes(CP1252_TEXT.encode("cp1252"), "iso-8859-1") == CP1252_TEXT  # latin-1 read as windows-1252
    assert decode_bytes('<meta charset="windows-1252"><p>café</p>'.encode("cp1252")) == (
        '<meta charset="windows-1252"><p>café</p>'
    )
    assert (
        decode_bytes((LATIN1_TEXT + " " + CP1252_TEXT).encode("cp1252"), html=False) == LATIN1_TEXT + " " + CP1252_TEXT
    )


def test_an_entry_that_is_no_url_is_told_what_a_url_starts_with() -> None:
    """Text that is no URL ("hello world", "example.com/page") hears about the scheme, not about its space; the
    message names the entry, and a real URL with a space in it hears about the space."""
    rows = fetch_sources(["hello world", "example.com/page", "https://example.com/a page"], [], FetchConfig())
    assert [r.error for r in rows] == [
        "URL 'hello world' must start with http:// or https://",
        "URL 'example.com/page' must start with http:// or https://",
        "URL 'https://example.com/a page' contains white space (write a space in a URL as %20)",
    ]
    assert all(r.status == "error" for r in rows)


# ------------------------------------------------------------------------------------------------ hostile inputs


@pytest.mark.parametrize(
    ("encoding", "raw"), [("gzip", False), ("deflate", False), ("deflate", True), ("br", False), ("gzip, br", False)]
)
def test_compressed_pages_are_decoded(site: str, config: FetchConfig, encoding: str, raw: bool) -> None:
    (row,) = fetch_sources([f"{site}/encoded?encoding={quote(encoding)}" + ("&raw=1" if raw else "")], [], config)
    assert row.status == "ok", row.error
    assert row.text.startswith("The llamas of Lima prefer rain")


def test_an_encoding_kinject_cannot_decode_is_named(site: str, config: FetchConfig) -> None:
    (row,) = fetch_sources([f"{site}/encoded?encoding=zstd"], [], config)
    assert row.error == "unsupported content encoding 'zstd' (kinject reads gzip, deflate, br)"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, gzip", "gzip, br"])
def test_a_compression_bomb_is_refused_at_the_decoded_limit_in_bounded_memory(site: str, encoding: str) -> None:
    """256 MB of HTML in 255 kB of gzip, 600 bytes of gzip twice, or 48 kB of brotli: refused once 5 MB are decoded.
    httpx decoded each chunk received whole: 64 MB at once for a gzip layer, all 256 MB for two layers or brotli
    (a 10 GB bomb measured: 7.5 GB of memory, then MemoryError)."""
    import tracemalloc

    from httpserver import encoded

    url = f"{site}/bomb?encoding={quote(encoding)}"
    encoded([n.strip() for n in encoding.split(",")], bomb=True)  # made before the measure
    tracemalloc.start()
    try:
        started = time.monotonic()
        (row,) = fetch_sources([url], [], FetchConfig(allow_private_urls=True))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB at the peak"  # httpx: 142 MB (a gzip layer) to 558 MB
    assert time.monotonic() - started < 5
    assert row.error.startswith(f"page larger than 5 MB limit once decoded (Content-Encoding {encoding}: stopped")


def test_a_file_that_links_out_of_its_folder_or_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A folder that came from elsewhere (an archive, a shared drive) may hold links: one named notes.txt that reads
    /etc/passwd or ~/.aws into a corpus (and a published adapter) is refused; a link inside the folder is read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("The password of the llama herders is rain-2026, says the census.\n")
    docs = tmp_path / "docs"
    (docs / "real").mkdir(parents=True)
    (docs / "real" / "facts.md").write_text("# Llamas\n\nThe llamas of Lima prefer rain, says the 2026 census.\n")
    (docs / "facts.md").symlink_to("real/facts.md")
    (docs / "passwd.txt").symlink_to("/etc/passwd")
    (docs / "escape.txt").symlink_to("../secret.txt")
    (docs / "zero.txt").symlink_to("/dev/zero")
    (docs / "loop.txt").symlink_to("loop.txt")
    os.mkfifo(docs / "pipe.txt")
    (docs / "folder.md").mkdir()
    names = ["facts.md", "passwd.txt", "escape.txt", "zero.txt", "loop.txt", "pipe.txt", "folder.md", "a\x00b.txt"]
    started = time.monotonic()
    rows = fetch_sources([], [str(docs / name) for name in names], FetchConfig())
    assert time.monotonic() - started < 5
    by_name = {Path(row.input).name: row for row in rows}
    assert by_name["facts.md"].status == "ok" and "llamas of Lima" in by_name["facts.md"].text
    assert by_name["passwd.txt"].error == (
        f"refused: {docs / 'passwd.txt'} is a symbolic link to /etc/passwd, outside its folder {docs.resolve()} (give "
        "the file's own path to read it)"
    )
    assert by_name["escape.txt"].error.startswith(f"refused: {docs / 'escape.txt'} is a symbolic link to {secret}")
    assert by_name["zero.txt"].error.startswith(f"refused: {docs / 'zero.txt'} is a symbolic link to /dev/zero")
    assert by_name["loop.txt"].error.startswith(f"cannot follow the symbolic link {docs / 'loop.txt'}")
    assert by_name["pipe.txt"].error == f"not a file: {docs / 'pipe.txt'} is a named pipe (FIFO)"
    assert by_name["folder.md"].error == f"not a file: {docs / 'folder.md'} is a folder"
    assert rows[-1].error.startswith("invalid file name") and "NUL byte" in rows[-1].error
    assert all(row.text == "" for row in rows[1:])


def test_hostile_sources_never_sink_a_prepare(site: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    """One prepare of a gzip bomb, a link to /etc/passwd, a PDF of 2,500 empty pages and a tag soup next to a good
    page and file: the good ones land, sources.jsonl gives each refusal its reason."""
    from pypdf import PdfWriter

    from kinject.corpus.prepare import prepare
    from kinject.settings.sources import InputsConfig
    from kinject.settings.stages import ModelConfig, PrepareConfig

    good = tmp_path / "good.md"
    good.write_text("# Llamas\n\nThe llamas of Lima prefer rain, says the 2026 census. Each drinks 4 litres a day.\n")
    (tmp_path / "notes.txt").symlink_to("/etc/passwd")
    writer = PdfWriter()
    for _ in range(2500):
        writer.add_blank_page(100, 100)
    writer.write(tmp_path / "empty.pdf")
    (tmp_path / "soup.html").write_bytes(b"<html><body>" + b"<b>w</b>" * 300_000 + b"</body></html>")
    files = [str(tmp_path / name) for name in ("good.md", "notes.txt", "empty.pdf", "soup.html")]
    urls = [f"{site}/bomb?encoding=gzip", f"{site}/ec2-p5.html"]
    inputs = InputsConfig(urls=urls, files=files)
    fetch = FetchConfig(allow_private_urls=True)
    config = PrepareConfig(inputs=inputs, model=ModelConfig(model=str(tiny_model_dir)), fetch=fetch)
    result = prepare(config, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "sources.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["error", "ok", "ok", "error", "error", "error"]
    errors = [r["error"] for r in rows if r["status"] == "error"]
    assert errors[0].startswith("page larger than 5 MB limit once decoded (Content-Encoding gzip")
    assert errors[1].startswith("refused: ") and "/etc/passwd" in errors[1]
    assert errors[2].startswith("PDF of 2500 pages, more than the 2000-page limit")
    assert errors[3].startswith("HTML of 300,002 elements, more than the 250,000-element limit")
    assert result.stats.blocks > 0 and "root:" not in (tmp_path / "run" / "sources.jsonl").read_text()


def test_a_pdf_that_holds_html_is_named_and_pypdf_stays_quiet(tmp_path, capsys, caplog):
    import io

    from pypdf import PdfWriter

    fake = tmp_path / "paper.pdf"
    fake.write_text("<!doctype html><html><body><p>Please log in to read this paper.</p></body></html>")
    writer, buffer = PdfWriter(), io.BytesIO()
    writer.add_blank_page(100, 100)
    writer.write(buffer)
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(buffer.getvalue()[:-30])  # no EOF marker
    caplog.set_level(logging.WARNING)
    rows = fetch_sources([], [str(fake), str(cut)], FetchConfig())
    assert rows[0].error == "not a PDF: it holds HTML (an error or login page in place of the document?)"
    assert rows[1].error.startswith("unreadable PDF")
    assert "EOF marker" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path, jail):
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as fh:
        fh.truncate(10_000_000_000)  # sparse: 10 GB that reading would take minutes and all the memory to load
    just_over = tmp_path / "over.md"
    just_over.write_bytes(b"word " * 1_000_001)  # 5,000,005 bytes: over the default limit
    fine = tmp_path / "fine.md"
    fine.write_text("# Notes\n\nThe llamas of Lima prefer rain, says the 2026 census of Peru.\n")
    started = time.monotonic()
    rows = fetch_sources([], [str(huge), str(just_over), str(fine)], FetchConfig())
    assert time.monotonic() - started < 5
    assert rows[0].error == "file larger than 5 MB limit (10000000000 bytes)"
    assert rows[1].error == "file larger than 5 MB limit (5000005 bytes)"
    assert rows[2].status == "ok" and rows[0].bytes == rows[1].bytes == 0
    (small,) = fetch_sources([], [str(fine)], FetchConfig(max_file_bytes=20))
    assert small.error.startswith("file larger than 20 bytes limit")


def test_junk_pages_get_their_specific_messages_while_a_good_page_succeeds(site, tmp_path, jail):
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(f"{i}, {i * 3.14159:.4f}, {i**2}" for i in range(200)))
    urls = [f"{site}/{p}" for p in ("binary-html", "banner-only", "deep", "empty", "ec2-p5.html")]
    rows = fetch_sources(urls, [str(numbers)], loopback(total_timeout_s=20))
    errors = [r.error for r in rows]
    assert errors[0].startswith("binary data, not text: ") and "control or replacement characters" in errors[0]
    assert errors[1].startswith("no text could be extracted: only boilerplate: its ")
    assert "cookie" in errors[1]
    assert (
        errors[2] == "no text could be extracted: too deep: its HTML nests 402 levels, and the parser gives up at 255"
    )
    assert errors[3].startswith("no text could be extracted: empty: the page has no visible text")
    assert rows[4].status == "ok" and "H100" in rows[4].text
    assert errors[5].startswith("no real words: only ")
