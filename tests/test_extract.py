"""What a body may cost to read, besides its size: HTML is bounded by its elements, a PDF by its pages and by the
seconds its text takes; each refusal names the limit."""

from __future__ import annotations

import io
import time

import pytest

from kinject.settings.sources import FetchConfig
from kinject.sources import extract as extraction
from kinject.sources.extract import MAX_HTML_ELEMENTS, MAX_PDF_PAGES, SourceError, decode_bytes, extract
from kinject.sources.fetch import fetch_sources

LLAMAS = "The llamas of Lima prefer rain, says the 2026 census of Peru. Each llama drinks four litres a day.\n"


def blank_pdf(pages: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(100, 100)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def shared_stream_pdf(pages: int, operators: bytes) -> bytes:
    """A PDF whose ``pages`` all draw one compressed content stream of text ``operators``: small on disk, each page
    as slow to read as the stream is long."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    resources = DictionaryObject({NameObject("/Font"): fonts})
    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf 72 712 Td " + operators + b" ET")
    contents = writer._add_object(stream.flate_encode())
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = contents
        page[NameObject("/Resources")] = resources
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_of_thousands_of_empty_pages_is_refused_by_its_page_count_at_once():
    body = blank_pdf(MAX_PDF_PAGES + 500)
    started = time.monotonic()
    with pytest.raises(SourceError, match=f"PDF of {MAX_PDF_PAGES + 500} pages, more than the 2000-page limit"):
        extract(body, "pdf", None, None)
    assert time.monotonic() - started < 2
    with pytest.raises(SourceError, match="no text could be extracted: none of its 3 pages holds text"):
        extract(blank_pdf(3), "pdf", None, None)


def test_a_pdf_whose_pages_are_slow_to_read_is_stopped_at_the_time_limit(monkeypatch):
    """40 pages in 7 kB sharing one stream of drawing commands (100 kB decoded), 0.1 s a page: read whole, 5 s here
    and, with longer streams, hours (37 kB for 200 pages of 8 s each measured)."""
    monkeypatch.setattr(extraction, "MAX_PDF_SECONDS", 0.3)
    body = shared_stream_pdf(40, b"(a) Tj " * 15_000)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"PDF too slow to read: \d+ of its 40 pages took over the 0.3 s limit"):
        extract(body, "pdf", None, None)
    assert time.monotonic() - started < 5


def test_html_of_too_many_elements_is_refused_before_it_is_parsed():
    """Under the byte limit, a page of bare tags costs the parsers minutes and gigabytes (500,000 elements in 4.5 MB:
    110 s and 1.1 GB measured); it is refused by its count, in a blink."""
    body = b"<html><body><p>The llamas of Lima prefer rain.</p>" + b"<br>" * MAX_HTML_ELEMENTS + b"</body></html>"
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"HTML of 250,003 elements, more than the 250,000-element limit"):
        extract(body, "html", "utf-8", None)
    assert time.monotonic() - started < 2
    title, text = extract(b"<html><body><p>The llamas of Lima prefer rain.</p></body></html>", "html", None, None)
    assert text == "The llamas of Lima prefer rain."


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_decoded(encoding, tmp_path):
    plain = LLAMAS * 3  # ASCII: as UTF-8 it would decode, NULs and all
    accented = "Die Lamas von Lima mögen Regen, sagt die Volkszählung 2026 von Perú. 日本語も少し。\n" * 3
    for text in (plain, accented):
        assert decode_bytes(text.encode(encoding), html=False) == text
        doc = tmp_path / "notes.txt"
        doc.write_bytes(text.encode(encoding))
        (row,) = fetch_sources([], [str(doc)], FetchConfig())
        assert row.status == "ok" and "Lima" in row.text, row.error
    # Text that merely holds a few NULs is not taken for UTF-16.
    assert decode_bytes(b"plain ascii\x00 text with one nul", html=False) == "plain ascii\x00 text with one nul"


def test_a_short_article_in_a_wrapper_named_like_chrome_is_kept():
    from kinject.sources.extract import extract

    article = (
        "The Lima llama census of 2026 counted four thousand animals in the hills, twice the number of the last "
        "count, and the herders expect more after the rainy season."
    )
    page = (
        '<html><body><div class="layout has-sidebar"><h1>Llama census</h1>'
        f"<p>{article}</p></div><footer>© Llama Society</footer></body></html>"
    ).encode()
    title, text = extract(page, "html", "utf-8", None)
    assert article in text
