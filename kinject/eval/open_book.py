"""The open-book baseline: the base model answering a knowledge probe with the run's pages in its prompt.

It is what retrieval would give without any training, so it is the yardstick an adapter answering closed-book is
held against. The whole corpus goes in when it fits the model's context (less the answer's tokens); otherwise the
paragraphs a lexical retriever (BM25) ranks highest for the question, as many as fit, in the pages' order.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import replace
from typing import Any

from ..augment.facts import paragraphs
from .probes import Probe

INSTRUCTION = "Answer the question using these passages from the pages.\n\n{passages}\n\nQuestion: {question}"
MIN_PASSAGE_TOKENS = 24  # below this there is no room for a passage: no open-book answer
_TERM = re.compile(r"\w+")


def _terms(text: str) -> list[str]:
    return [t.lower() for t in _TERM.findall(text)]


def rank_passages(query: str, passages: list[str], k1: float = 1.5, b: float = 0.75) -> list[int]:
    """Indices of ``passages`` by BM25 score for ``query``, best first (ties keep the pages' order)."""
    docs = [_terms(p) for p in passages]
    if not docs:
        return []
    avg = sum(len(d) for d in docs) / len(docs) or 1.0
    df = Counter(t for d in docs for t in set(d))
    n = len(docs)

    def score(doc: list[str]) -> float:
        tf = Counter(doc)
        total = 0.0
        for t in set(_terms(query)):
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                total += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(doc) / avg))
        return total

    scores = [score(d) for d in docs]
    return sorted(range(n), key=lambda i: (-scores[i], i))


def select_passages(query: str, texts: list[str], tokenizer: Any, budget: int) -> list[str]:
    """The corpus itself when it fits ``budget`` tokens, else the best-ranked paragraphs that fit, in order."""
    whole = "\n\n".join(texts)
    if len(tokenizer(whole, add_special_tokens=False)["input_ids"]) <= budget:
        return [whole]
    parts = [p for text in texts for p in paragraphs(text)]
    chosen, used = [], 0
    for i in rank_passages(query, parts):
        size = len(tokenizer(parts[i], add_special_tokens=False)["input_ids"]) + 2
        if used + size <= budget:
            chosen.append(i)
            used += size
    return [parts[i] for i in sorted(chosen)]


def open_book_probe(probe: Probe, texts: list[str], tokenizer: Any, context: int, answer_tokens: int) -> Probe | None:
    """``probe`` asked with the relevant passages in the prompt, fitting ``context`` with ``answer_tokens`` left
    for the answer; None when no passage fits."""
    question = probe.question or probe.prompt
    frame = INSTRUCTION.format(passages="", question=question)
    overhead = len(tokenizer(frame)["input_ids"]) + 32  # the chat template's own tokens
    budget = context - answer_tokens - overhead
    if budget < MIN_PASSAGE_TOKENS:
        return None
    passages = select_passages(question, texts, tokenizer, budget)
    if not passages:
        return None
    text = "\n\n".join(passages)
    if probe.question:
        return replace(probe, question=INSTRUCTION.format(passages=text, question=probe.question))
    return replace(probe, prompt=f"{text}\n\n{probe.prompt}")  # a completion probe continues after the pages
