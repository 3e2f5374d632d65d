"""Evaluation: did the adapter learn the run's facts, and what did training cost the chat model? (stage: evaluate)

- ``probes``: probe files, automatic probes cut from the corpus, the shipped retention probes and general data;
- ``metrics``: scoring with a model (``score_probes``, the reusable scorer), perplexity;
- ``drift``: KL(base || adapter) over the base's own greedy answers, the one KL scorer (the forgetting guard's too);
- ``report``: ``EvalReport`` and eval.json / eval.md / eval.png;
- ``runner``: the ``evaluate`` verb.

Accuracy is "the answer contains an accepted alias"; the mean log-likelihood of the accepted answer is reported
beside it as a graded signal that is less noisy than pass/fail on small models. Forgetting is measured on shipped
general data: KL(base || adapter) over the base model's own greedy answers to general chat prompts, and the
perplexity ratio on a general text sample. An answer is matched to its probe by ``kinject.augment.matching``, the
rule the training data is checked with too.

May import: ``kinject.augment``, ``kinject.models``, ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""

from .metrics import Answer, Forgetting, ProbeResult, Scores, score_probes, summarize
from .probes import (
    EvalError,
    EvalStopped,
    Probe,
    ProbeError,
    auto_probes,
    collect_probes,
    corpus_texts,
    load_probes,
    shipped_retention_probes,
)
from .report import EvalReport, format_markdown, format_table, read_report
from .runner import EvalSize, eval_sizes, evaluate

__all__ = [
    "Answer",
    "EvalError",
    "EvalReport",
    "EvalSize",
    "EvalStopped",
    "Forgetting",
    "Probe",
    "ProbeError",
    "ProbeResult",
    "Scores",
    "auto_probes",
    "collect_probes",
    "corpus_texts",
    "eval_sizes",
    "evaluate",
    "format_markdown",
    "format_table",
    "load_probes",
    "read_report",
    "score_probes",
    "shipped_retention_probes",
    "summarize",
]
