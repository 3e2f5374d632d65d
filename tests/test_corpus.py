"""Cleaning keeps paragraphs, dedup removes repeated documents and cross-page chrome."""

from __future__ import annotations

from types import SimpleNamespace

from kinject.corpus.clean import build_corpus, clean_text
from kinject.settings.stages import CorpusConfig


def src(input, text, status="ok", title="t"):  # noqa: A002
    return SimpleNamespace(
        input=input,
        kind="url",
        status=status,
        title=title,
        text=text,
        error="" if status == "ok" else "boom",
        final_url="",
        fetched_at="2026-01-01T00:00:00Z",
    )


def test_clean_text_keeps_paragraph_breaks():
    raw = "  Hello\t  world \u200b!\r\n\r\n\n  Second   para\nline two  \n\n\n"
    assert clean_text(raw) == "Hello world !\n\nSecond para\nline two"


def test_dedup_documents_and_cross_page_lines():
    footer = "Privacy | Site terms | Cookie preferences"
    a = f"Article A talks about H100 GPUs and their memory in great detail.\n\n{footer}"
    b = f"Article B talks about vector databases and the indexes they build.\n\n{footer}"
    sources = [src("a", a), src("b", b), src("c", a), src("d", "", status="error")]
    corpus = build_corpus(sources, CorpusConfig())
    assert [d["source"] for d in corpus.documents] == ["a", "b"]
    assert all(footer not in d["text"] for d in corpus.documents)
    assert corpus.rows[0]["dropped_lines"] == 1
    assert corpus.rows[2]["status"] == "duplicate" and "same text as a" in corpus.rows[2]["error"]
    assert corpus.rows[3]["status"] == "error" and corpus.rows[3]["error"] == "boom"
    assert [r["input"] for r in corpus.rows] == ["a", "b", "c", "d"]  # one row per input, in order


def test_short_document_reported():
    corpus = build_corpus([src("x", "Too short.")], CorpusConfig(min_document_chars=40))
    assert not corpus.ok
    assert corpus.rows[0]["status"] == "error" and "characters" in corpus.rows[0]["error"]


def test_dataset_columns():
    corpus = build_corpus([src("a", "A long enough article sentence about something specific, in ten words.")])
    ds = corpus.to_dataset()
    assert ds.column_names == ["text", "source", "title", "sha256", "fetched_at"]
    assert len(ds[0]["sha256"]) == 64
