"""How long a training runs: epochs that follow from the facts to be learnt, not from the number of blocks.

A fact is seen once an epoch in each place that states it: the page itself, each kept paraphrase of its passage and
each kept question-answer pair whose answer holds it. ``exposures_per_epoch`` counts those places for every fact of
the corpus (a date, number or name in a sentence, as augmentation finds them) and averages them; a training asked
for ``fact_exposures`` runs ``fact_exposures / exposures_per_epoch`` epochs, within ``[MIN_EPOCHS, MAX_EPOCHS]``.
One page with few questions then gets as many passes as its facts need, and fifty pages get no more passes than
one: their steps grow with their facts, as they must, but not their epochs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..corpus.mix import balanced

MIN_EPOCHS = 1.0
MAX_EPOCHS = 12.0


@dataclass
class Budget:
    """The epochs a training runs and where they came from."""

    epochs: float
    facts: int  # facts found in the corpus (0: none found, so the exposures could not be counted)
    exposures_per_epoch: float  # mean places a fact is stated in, per pass over the training data
    fact_exposures: float | None  # the exposures asked for (None: epochs were given)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def corpus_facts(documents: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(passage id, sentence, fact) for every fact of every sentence of the corpus, as augmentation asks them."""
    from ..augment import asked_sentences, facts_of, split_passages

    return [
        (p.id, s, fact) for p in split_passages(documents) for s in asked_sentences(p.text) for fact in facts_of(s)
    ]


def exposures_per_epoch(documents: list[dict[str, Any]], blocks: Any, augmentation: Any = None) -> tuple[int, float]:
    """(facts, mean places each fact is stated in per epoch) for training on ``blocks`` (a ``BlocksConfig``)."""
    from ..augment.matching import match_answer

    facts = corpus_facts(documents)
    if not facts:
        return 0, 0.0
    page_forms = {"raw": 1, "chat": 1, "both": 2}.get(blocks.text_format, 0)
    texts: dict[str, list[str]] = {}  # passage id -> the generated texts that restate it
    rows = []
    if augmentation is not None and blocks.use_paraphrases:
        rows += [(r["passage"], r["text"]) for r in augmentation.kept("paraphrase")]
    if augmentation is not None and blocks.use_qa:
        qa = augmentation.kept("qa")
        rows += [(r["passage"], r["answer"]) for r in (balanced(qa) if blocks.balance_facts else qa)]
    if augmentation is not None:  # the user's own pairs name no passage: they count for the fact wherever it is
        rows += [(passage, r["answer"]) for r in augmentation.kept("user") for passage in {p for p, _, _ in facts}]
    for passage, text in rows:
        texts.setdefault(passage, []).append(text)
    # The evaluation's own matching ("11" is not stated by "111 rooms"), within the fact's passage.
    total = sum(
        page_forms + sum(match_answer(t, [fact]) is not None for t in texts.get(passage, []))
        for passage, _, fact in facts
    )
    return len(facts), total / len(facts)


def plan_epochs(
    epochs: float | None, fact_exposures: float | None, documents: list[dict[str, Any]], blocks: Any, augmentation=None
) -> Budget:
    """The epochs to train: ``epochs`` when given, else enough for ``fact_exposures`` per fact (bounded)."""
    facts, per_epoch = exposures_per_epoch(documents, blocks, augmentation)
    if epochs is not None:
        return Budget(epochs, facts, round(per_epoch, 3), None, f"{epochs:g} epochs, as set")
    if not fact_exposures:
        raise ValueError("set epochs or fact_exposures")
    if per_epoch <= 0:
        return Budget(
            MAX_EPOCHS, facts, 0.0, fact_exposures, f"{MAX_EPOCHS:g} epochs: no fact (date, number or name) was found"
        )
    wanted = fact_exposures / per_epoch
    chosen = min(max(wanted, MIN_EPOCHS), MAX_EPOCHS)
    bound = "" if chosen == wanted else f" (bounded from {wanted:.1f})"
    reason = (
        f"{chosen:.1f} epochs{bound}: {facts} facts, each stated {per_epoch:.1f} times a pass, "
        f"for {fact_exposures:g} exposures each"
    )
    return Budget(round(chosen, 3), facts, round(per_epoch, 3), fact_exposures, reason)
