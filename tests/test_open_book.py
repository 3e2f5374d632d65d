"""The open-book baseline: the base model with the run's pages in its prompt, within the model's context."""

from __future__ import annotations

from kinject.eval.open_book import INSTRUCTION, open_book_probe, rank_passages, select_passages
from kinject.eval.probes import Probe

TEXT = (
    "Aurora Avionics launched the Kestrel K7 survey drone in Tallinn. It flies for 41 minutes on one battery.\n\n"
    "The Harbor Line tram has 14 stops and opens in May. Its cars are built by Lindqvist Rail.\n\n"
    "A new bakery on the corner sells rye bread every morning.\n\n"
)


def test_bm25_ranks_the_paragraph_that_answers_first():
    parts = TEXT.strip().split("\n\n")
    assert rank_passages("How many stops does the Harbor Line tram have?", parts)[0] == 1
    assert rank_passages("How long does the Kestrel K7 fly?", parts)[0] == 0


def test_the_whole_corpus_goes_in_when_it_fits(bundled_tokenizer):
    assert select_passages("tram stops?", [TEXT], bundled_tokenizer, 10_000) == [TEXT]
    probe = Probe(id="t", kind="knowledge", question="How many stops does the tram have?", answers=["14"])
    asked = open_book_probe(probe, [TEXT], bundled_tokenizer, context=8192, answer_tokens=200)
    assert asked.question == INSTRUCTION.format(passages=TEXT, question=probe.question)
    assert asked.answers == probe.answers and asked.id == probe.id


def test_top_passages_fit_the_context_when_the_corpus_does_not(bundled_tokenizer):
    from kinject.models.generate import chat_prompt_ids

    corpus = [TEXT + ("Filler sentence about nothing in particular. " * 40 + "\n\n") * 20]
    probe = Probe(id="t", kind="knowledge", question="How many stops does the Harbor Line tram have?", answers=["14"])
    context, answer = 256, 32
    asked = open_book_probe(probe, corpus, bundled_tokenizer, context=context, answer_tokens=answer)
    assert "14 stops" in asked.question and "Filler" not in asked.question
    ids = chat_prompt_ids(bundled_tokenizer, [{"role": "user", "content": asked.question}])
    assert len(ids) + answer <= context  # the passages and the question leave room for the answer
    assert open_book_probe(probe, corpus, bundled_tokenizer, context=80, answer_tokens=answer) is None


def test_evaluate_reports_the_open_book_base(tiny_run, tiny_model_dir):
    from test_evaluate import FAST, SHORT, _zero_adapter

    from kinject.eval import evaluate
    from kinject.runs import RunDir
    from kinject.settings.stages import EvalConfig

    _zero_adapter(tiny_run, tiny_model_dir)
    report = evaluate(tiny_run, EvalConfig(**FAST), generation=SHORT)
    knowledge = [r for r in report.probes if r.probe.kind == "knowledge"]
    assert knowledge and all(r.open_book is not None for r in knowledge)
    assert all(r.open_book is None for r in report.probes if r.probe.kind == "retention")
    assert report.open_book.knowledge_scored == len(knowledge)
    data = RunDir(tiny_run).read_eval()
    assert data["open_book"]["knowledge_scored"] == len(knowledge)
    assert "open book" in RunDir(tiny_run).eval_markdown()
    off = evaluate(tiny_run, EvalConfig(**FAST, open_book=False), generation=SHORT)
    assert off.open_book is None and all(r.open_book is None for r in off.probes)
