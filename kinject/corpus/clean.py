"""Clean extracted text and build the training corpus (stage: corpus).

Cleaning normalizes white space but keeps paragraph breaks, drops documents that repeat an earlier one, and drops
site chrome that survives main-content extraction: lines that recur across documents and look like chrome (short,
not a sentence, or navigation-like), and lines on most pages of a batch. A full sentence that two articles share
(both quote the same fact) is content and stays in both. A document needs a minimum of characters and words.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..settings.stages import CorpusConfig
from ..sources.extract import count_words

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_SPACES = re.compile(r"[^\S\n]+")  # white space other than newlines
_PARA_SPLIT = re.compile(r"\n\s*\n")


@dataclass
class Corpus:
    """The cleaned documents plus one report row per input source."""

    documents: list[dict[str, Any]] = field(default_factory=list)  # text, source, title, sha256, fetched_at
    rows: list[dict[str, Any]] = field(default_factory=list)  # sources.jsonl rows, in input order

    @property
    def ok(self) -> bool:
        return bool(self.documents)

    def to_dataset(self):
        """The documents as a ``datasets.Dataset`` (columns text, source, title, sha256, fetched_at)."""
        from datasets import Dataset

        columns = ("text", "source", "title", "sha256", "fetched_at")
        return Dataset.from_dict({c: [d[c] for d in self.documents] for c in columns})


def clean_text(text: str) -> str:
    """Normalize Unicode and white space; keep paragraph breaks (blank lines) and line breaks inside them."""
    text = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH).replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = []
    for para in _PARA_SPLIT.split(text):
        lines = [_SPACES.sub(" ", line).strip() for line in para.split("\n")]
        lines = [line for line in lines if line]
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_corpus(sources: list[Any], config: CorpusConfig | None = None, tokenizer: Any = None) -> Corpus:
    """Turn fetched sources into a deduplicated corpus and the per-source report.

    ``sources`` are ``kinject.sources.fetch.Source`` rows; ``tokenizer`` (optional) fills the token counts.
    """
    config = config or CorpusConfig()
    cleaned = [clean_text(s.text) if s.status == "ok" else "" for s in sources]

    repeated: set[str] = set()
    if config.dedup_paragraphs:
        repeated = chrome_lines([text for text in set(cleaned) if text])

    corpus = Corpus()
    first_by_hash: dict[str, str] = {}
    for src, text in zip(sources, cleaned, strict=True):
        row: dict[str, Any] = {
            "input": src.input,
            "kind": src.kind,
            "status": src.status,
            "title": src.title,
            "chars": 0,
            "tokens": 0,
            "sha256": "",
            "error": src.error,
            "final_url": src.final_url,
            "fetched_at": src.fetched_at,
            "dropped_lines": 0,
        }
        corpus.rows.append(row)
        if src.status != "ok":
            continue
        if repeated:
            text, dropped = _drop_lines(text, repeated)
            row["dropped_lines"] = dropped
        digest = sha256(text)
        row.update(chars=len(text), sha256=digest)
        if len(text) < config.min_document_chars:
            row.update(status="error", error=f"only {len(text)} characters of text after cleaning")
            continue
        if (words := count_words(text)) < config.min_document_words:
            row.update(
                status="error",
                error=f"only {words} words of text after cleaning (at least {config.min_document_words} needed)",
            )
            continue
        if config.dedup_documents and digest in first_by_hash:
            row.update(status="duplicate", error=f"same text as {first_by_hash[digest]}")
            continue
        first_by_hash[digest] = src.input
        if tokenizer is not None:
            row["tokens"] = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        corpus.documents.append(
            {
                "text": text,
                "source": src.final_url or src.input,
                "title": src.title,
                "sha256": digest,
                "fetched_at": src.fetched_at,
            }
        )
    return corpus


# A line ending like a sentence; and lines that read as navigation or legal chrome even when they are sentences.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]」』]*$")
_CHROME = re.compile(
    r"[|·•›»]|©|\ball rights reserved\b|\b(?:we|this site|this website) uses? cookies\b|\bprivacy policy\b|"
    r"\bterms of (?:use|service)\b|\bsign (?:in|up)\b|\bsubscribe\b|\bfollow us\b",
    re.IGNORECASE,
)
SENTENCE_MIN_WORDS = 5  # a shorter repeated line ("Related posts", "Share this") is chrome, not a shared fact


def is_sentence(line: str) -> bool:
    """A full sentence (enough words, a sentence's end, no navigation or legal markers): content, not chrome."""
    return count_words(line) >= SENTENCE_MIN_WORDS and bool(_SENTENCE_END.search(line)) and not _CHROME.search(line)


def chrome_lines(documents: list[str]) -> set[str]:
    """The lines of ``documents`` (distinct texts) that are site chrome.

    A line counts once per document. Repeated in two or more documents, a line is chrome when it is not a full
    sentence (a menu, a heading such as "Related posts", a footer with separators); a full sentence is chrome only
    when it is on most pages of a batch of three or more (a site-wide notice), so one that two articles quote stays.
    """
    seen = Counter(line for text in documents for line in set(text.split("\n")) if line)
    pages = len(documents)
    return {line for line, n in seen.items() if n > 1 and (not is_sentence(line) or (n >= 3 and n * 2 > pages))}


def _drop_lines(text: str, repeated: set[str]) -> tuple[str, int]:
    kept_paras, dropped = [], 0
    for para in text.split("\n\n"):
        lines = para.split("\n")
        kept = [line for line in lines if line not in repeated]
        dropped += len(lines) - len(kept)
        if kept:
            kept_paras.append("\n".join(kept))
    return "\n\n".join(kept_paras), dropped
