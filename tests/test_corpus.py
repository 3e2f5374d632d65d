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


TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 6


def test_a_document_needs_its_minimum_of_words():
    def src(name: str, text: str):
        return SimpleNamespace(
            input=name, kind="url", status="ok", title="", text=text, error="", final_url="", fetched_at=""
        )

    short = "Accept cookies to continue reading this page now."  # 8 words, 50 characters
    corpus = build_corpus([src("a", short), src("b", TEXT)], CorpusConfig())
    assert corpus.rows[0]["status"] == "error"
    assert corpus.rows[0]["error"] == "only 8 words of text after cleaning (at least 10 needed)"
    assert corpus.rows[1]["status"] == "ok"
    assert build_corpus([src("a", short)], CorpusConfig(min_document_words=8)).ok


def _doc(name: str, text: str):
    return SimpleNamespace(
        input=name, kind="url", status="ok", title=name, text=text, error="", final_url="", fetched_at=""
    )


def test_a_sentence_two_articles_share_survives_dedup():
    fact = "The 2026 census counted four thousand llamas in the hills above Lima."
    chrome = ["Home | News | About", "Related posts", "Share this article"]
    a = "\n\n".join(
        [chrome[0], "Llamas of Lima", f"Herders in Peru say the animals like rain. {fact}", fact, *chrome[1:]]
    )
    b = "\n\n".join(
        [chrome[0], "Rain in Peru", "The rainy season starts in December and lasts four months.", fact, *chrome[1:]]
    )
    corpus = build_corpus([_doc("a", a), _doc("b", b)])
    texts = [d["text"].split("\n\n") for d in corpus.documents]
    assert all(fact in paragraphs for paragraphs in texts)  # in both, as its own line
    assert not any(line in paragraphs for line in chrome for paragraphs in texts)
    assert corpus.rows[0]["dropped_lines"] == corpus.rows[1]["dropped_lines"] == 3


def test_a_sentence_on_most_pages_of_a_batch_is_chrome():
    notice = "This website is run by the Llama Society of Peru, a registered charity."
    fact = "The 2026 census counted four thousand llamas in the hills above Lima."
    pages = [f"Article number {n} has a paragraph of its own about llamas and rain.\n\n{notice}" for n in range(3)]
    pages[0] += f"\n\n{fact}"
    pages[1] += f"\n\n{fact}"
    corpus = build_corpus([_doc(str(n), text) for n, text in enumerate(pages)])
    assert all(notice not in d["text"] for d in corpus.documents)  # on 3 of 3 pages: site-wide
    assert [fact in d["text"] for d in corpus.documents] == [True, True, False]  # on 2 of 3: content


def test_chinese_and_japanese_text_counts_its_words_and_keeps_a_shared_sentence():
    fact = "二〇二六年の調査では、リマの丘で四千頭のラマが数えられた。"
    a = "\n\n".join(["リマのラマ", "ペルーの牧夫によると、ラマは雨が好きだという。", fact, "ホーム | ニュース"])
    b = "\n\n".join(["ペルーの雨", "雨季は十二月に始まり、四か月続く。", fact, "ホーム | ニュース"])
    corpus = build_corpus([_doc("a", a), _doc("b", b)])
    assert [r["status"] for r in corpus.rows] == ["ok", "ok"], corpus.rows  # not "only N words"
    assert all(fact in d["text"] for d in corpus.documents)  # a full sentence two articles share stays
    assert all("ホーム | ニュース" not in d["text"] for d in corpus.documents)  # the shared menu goes
