"""Evaluation: scoring rules, probe files, automatic probes and forgetting numbers on tiny models (the trained P5
run's evaluation is in test_knowledge.py, beside the other tests of that run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from eval_checks import assert_report_files_agree
from model_fixtures import TINY_BLOCKS

from kinject.augment.matching import is_correct, match_answer, normalize_answer
from kinject.eval import (
    EvalStopped,
    ProbeError,
    auto_probes,
    corpus_texts,
    evaluate,
    format_table,
    load_probes,
    score_probes,
    shipped_retention_probes,
)
from kinject.runs import RunDir
from kinject.runtime.progress import Progress, RecordingProgress
from kinject.settings.stages import EvalConfig, GenerationConfig
from kinject.settings.training import TrainConfig

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
    "At the AWS Summit in New York City on July 26, 2023, AWS announced the general availability of P5."
)


# ------------------------------------------------------------------------------------------------------ scoring


@pytest.mark.parametrize(
    "answer, aliases, expected",
    [
        ("The capital of France is Paris.", ["Paris"], True),
        ("the capital is PARIS", ["paris"], True),
        ("It is in Lyon.", ["Paris"], False),
        ("A Parisian café", ["Paris"], False),  # a word boundary, not a substring
        ("They use NVIDIA H100s.", ["H100"], True),  # a plural still counts
        ("It delivers 3200 Gbps", ["3,200"], True),
        ("It delivers 3,200 Gbps", ["3200"], True),
        ("It delivers 3 200 Gbps", ["3,200"], True),
        ("It delivers 3\u202f200 Gbps", ["3200"], True),
        ("up to 16,000 dimensions", ["16000"], True),
        ("It has 2TB of memory", ["2 TB"], True),
        ("It has 2 TB of memory", ["2TB"], True),
        ("It has   2\n TB", ["2 TB"], True),  # whitespace runs
        ("each has 8 GPUs", ["8", "eight"], True),
        ("each has eight GPUs", ["8", "eight"], True),
        ("each has 128 GPUs", ["8"], False),  # "8" is not inside "128"
        ("a p5.48xlarge", ["8"], False),
        ("about 8.5 GPUs", ["8"], False),
        ("about 80 GPUs", ["8"], False),
        ("eighteen GPUs", ["eight"], False),
        ("Water boils at 100.0 degrees", ["100"], True),
        ("it is rule-based", ["rule based"], True),
        ("anything at all", [], None),  # behaviour-only probe: not scored
    ],
)
def test_is_correct(answer, aliases, expected):
    assert is_correct(answer, aliases) is expected


def test_match_answer_names_the_alias_and_normalizes_both_sides():
    assert match_answer("Eight of them", ["8", "eight"]) == "eight"
    assert normalize_answer("3,200 Gbps") == normalize_answer("3 200  gbps") == "3200 gbps"
    assert normalize_answer("July 26, 2023") == "july 26, 2023"  # not a thousands separator


# -------------------------------------------------------------------------------------------------- probe files


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "probes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = '{"id": "a", "kind": "knowledge", "question": "Q?", "answers": ["x"]}'


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"id": "b", "kind": "fact", "question": "Q?"}', "probes.jsonl line 3: field 'kind' must be knowledge or"),
        ('{"kind": "knowledge", "question": "Q?"}', "line 3: field 'id' must be a non-empty string"),
        ('{"id": "b", "kind": "retention"}', "line 3: field 'question' is missing"),
        ('{"id": "b", "kind": "knowledge", "question": "Q?", "answers": "x"}', "line 3: field 'answers' must be a"),
        ('{"id": "b", "kind": "knowledge", "question": "Q?", "answers": [""]}', "line 3: field 'answers' must be a"),
        ('{"id": "b", "kind": "knowledge", "question": 7}', "line 3: field 'question' must be a string"),
        ('{"id": "b", "kind": "knowledge", "question": "Q?", "answer": ["x"]}', "line 3: field 'answer' is unknown"),
        ('{"id": "a", "kind": "knowledge", "question": "Q?"}', "line 3: field 'id' repeats 'a' from line 1"),
        ('{"id": "b", "kind": ', "line 3: not valid JSON"),
        ('["b"]', "line 3: must be a JSON object"),
    ],
)
def test_malformed_probe_line_names_line_and_field(tmp_path, bad, message):
    path = _write(tmp_path, [GOOD, "", bad])  # line 2 is blank and skipped, but still counted
    with pytest.raises(ProbeError, match=re.escape(message)):
        load_probes(path)


def test_probe_file_loads(sample_dir):
    probes = load_probes(sample_dir / "probes.jsonl")
    by_id = {p.id: p for p in probes}
    assert by_id["p5-net"].answers == ["3200", "3,200"] and by_id["p5-net"].kind == "knowledge"
    assert by_id["chat-haiku"].answers == [] and by_id["chat-haiku"].kind == "retention"  # behaviour only
    assert all(p.origin == "file" for p in probes)
    shipped = shipped_retention_probes()
    assert len(shipped) >= 8 and all(p.kind == "retention" and p.origin == "shipped" for p in shipped)
    assert sum(bool(p.answers) for p in shipped) >= 6


def test_cli_bad_probe_file_exits_1(tmp_path, capsys):
    from kinject.cli.main import main

    (tmp_path / "config.yaml").write_text("model:\n  model: smollm2-135m-instruct\n")
    path = _write(tmp_path, [GOOD, '{"id": "b", "kind": "fact", "question": "Q?"}'])
    assert main(["eval", str(tmp_path), "--probes", str(path)]) == 1
    assert "error: probes.jsonl line 2: field 'kind' must be knowledge or retention" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------------- auto probes


def test_auto_probes_are_deterministic_spread_and_keep_their_passage():
    docs = [TEXT, "Short heading\n\nThe vector engine for Amazon OpenSearch Serverless supports up to 16,000 dims."]
    first, second = auto_probes(docs, 4), auto_probes(docs, 4)
    assert [(p.id, p.prompt, p.answers) for p in first] == [(p.id, p.prompt, p.answers) for p in second]
    assert len(first) == 4
    assert {p.id.split("-")[1] for p in first[:2]} == {"1", "2"}  # round-robin across documents
    for p in first:
        assert p.kind == "knowledge" and p.origin == "auto" and not p.question
        assert len(p.answers) == 1 and p.prompt + " " + p.answers[0] in p.source_passage
    spans = [p.answers[0] for p in auto_probes(docs, 20)]
    assert "8" in spans and "3,200 Gbps" in spans and "16,000" in spans and "July 26, 2023" in spans
    assert auto_probes(docs, 0) == [] and auto_probes([], 5) == []


# ------------------------------------------------------------------------------------------------- tiny models

FAST = dict(auto_probes=3, kl_max_new_tokens=6)
SHORT = GenerationConfig(max_new_tokens=6)


def _zero_adapter(run_dir: Path, model_dir: Path) -> None:
    """An adapter as peft creates it: B matrices zero, so it changes nothing until trained."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    model.save_pretrained(RunDir(run_dir).adapter_dir)


def test_untrained_adapter_changes_nothing(tiny_run, tiny_model_dir):
    _zero_adapter(tiny_run, tiny_model_dir)
    report = evaluate(tiny_run, EvalConfig(**FAST), generation=SHORT)
    f = report.forgetting
    assert f is not None and f.kl_mean < 1e-6 and f.kl_max < 1e-6 and f.kl_tokens > 0
    assert abs(f.ppl_ratio - 1.0) < 1e-4 and f.ppl_tokens > 1000
    assert report.note is None and report.adapter is not None
    # The same answers on both sides: the report says the adapter answers nothing more, in the table and eval.md.
    assert "answers no more knowledge probes than the base" in format_table(report)
    assert "answers no more knowledge probes than the base" in RunDir(tiny_run).eval_markdown()
    c = report.contamination  # the same answers on both sides: nothing leaked, every general answer compared
    assert c is not None and c.answers == 0 and c.of == len(shipped_retention_probes()) and c.names > 0
    for r in report.probes:
        assert r.base.text == r.adapter.text and r.base.correct == r.adapter.correct
        if r.probe.answers:
            assert r.base.logprob == pytest.approx(r.adapter.logprob, abs=1e-9)


def test_probes_are_asked_in_their_form(tiny_run, tiny_model_dir):
    _zero_adapter(tiny_run, tiny_model_dir)
    report = evaluate(tiny_run, EvalConfig(**FAST), generation=SHORT)
    kinds = [r.probe.kind for r in report.probes]
    assert kinds.count("knowledge") == 3 and kinds.count("retention") == len(shipped_retention_probes())
    assert {r.form for r in report.probes if r.probe.kind == "knowledge"} == {"completion"}  # auto: no question
    assert {r.form for r in report.probes if r.probe.kind == "retention"} == {"chat"}


def test_evaluation_reports_progress_per_answer(tiny_run, tiny_model_dir):
    _zero_adapter(tiny_run, tiny_model_dir)
    progress = RecordingProgress()
    report = evaluate(tiny_run, EvalConfig(**FAST), progress, SHORT)
    starts = [info for name, info in progress.events if name == "start" and info[0] == "evaluate"]
    advances = [info for name, info in progress.events if name == "advance"]
    open_book = sum(r.open_book is not None for r in report.probes)  # knowledge probes asked with the pages too
    assert open_book and starts == [("evaluate", 2 * len(report.probes) + open_book + 8)]
    assert len(advances) == starts[0][1]


def test_report_files_agree_and_settings_are_recorded(tiny_run, tiny_model_dir):
    _zero_adapter(tiny_run, tiny_model_dir)
    report = evaluate(tiny_run, EvalConfig(**FAST), generation=SHORT)
    data = assert_report_files_agree(tiny_run)
    assert data["forgetting"]["kl_mean"] == report.forgetting.kl_mean
    assert data["contamination"]["of"] == report.contamination.of > 0
    assert data["settings"]["generation"]["max_new_tokens"] == 6
    config = RunDir(tiny_run).read_config()
    assert config["eval"]["auto_probes"] == 3 and config["generation"]["max_new_tokens"] == 6
    assert "kl_mean" in format_table(report) and "knowledge_accuracy" in format_table(report)


def test_trained_adapter_diverges(tiny_run):
    from kinject.training.pipeline import train

    config = TrainConfig(preset="cpu-demo", max_steps=3, learning_rate=5e-2, quantization="none", guard_checks=0)
    train(tiny_run, config, blocks=TINY_BLOCKS)
    report = evaluate(tiny_run, EvalConfig(**{**FAST, "retention": False}), generation=SHORT)
    assert report.forgetting.kl_mean > 1e-4 and abs(report.forgetting.ppl_ratio - 1.0) > 1e-4
    assert report.settings["adapter_step"] == 3 and report.settings["adapter_status"] == "done"
    assert all(r.adapter is not None for r in report.probes)


def test_run_without_adapter_evaluates_the_base_alone(tiny_run, capsys):
    from kinject.cli.main import main

    probes = _write(tiny_run, [GOOD.replace('"Q?"', '"What GPUs?"').replace('["x"]', '["H100"]')])
    code = main(["eval", str(tiny_run), "--probes", str(probes), "--max-new-tokens", "4", "--no-retention"])
    out = capsys.readouterr().out
    assert code == 0 and "knowledge_accuracy" in out and "no adapter" in out
    data = assert_report_files_agree(tiny_run)
    assert data["has_adapter"] is False and data["adapter"] is None and data["forgetting"] is None
    assert "no adapter" in data["note"] and "no adapter" in RunDir(tiny_run).eval_markdown()
    (probe,) = data["probes"]
    assert probe["base"]["text"] is not None and probe["adapter"] is None
    assert probe["form"] == "chat" and isinstance(probe["base"]["logprob"], float)


def test_stop_writes_nothing(tiny_run):
    class StopNow(Progress):
        def should_stop(self) -> bool:
            return True

    with pytest.raises(EvalStopped):
        evaluate(tiny_run, EvalConfig(**FAST), StopNow(), SHORT)
    assert RunDir(tiny_run).read_eval() is None


class StopAfter(Progress):
    """Stops once ``n`` answers were given (checked before the next batch)."""

    def __init__(self, n: int):
        self.n, self.answers = n, 0

    def advance(self, n=1, **info):
        self.answers += n

    def should_stop(self) -> bool:
        return self.answers >= self.n


def test_a_stop_keeps_the_probes_both_sides_answered(tiny_run, tiny_model_dir):
    _zero_adapter(tiny_run, tiny_model_dir)
    # One probe at a time: base, adapter, base, adapter, base: stop.
    report = evaluate(tiny_run, EvalConfig(**FAST, eval_batch_size=1, open_book=False), StopAfter(5), SHORT)
    data = RunDir(tiny_run).read_eval()
    assert report.stopped and data["stopped"] is True and report.forgetting is None
    assert len(data["probes"]) == 2 and all(p["base"] and p["adapter"] for p in data["probes"])
    assert data["settings"]["probes_planned"] > 2 and "stopped after 2 of" in data["note"]
    assert report.base.retention_scored + report.base.knowledge_scored <= 2


def test_a_stop_keeps_the_groups_both_sides_answered(tiny_run, tiny_model_dir):
    _zero_adapter(tiny_run, tiny_model_dir)
    # Groups of 2: base 2, adapter 2 (the first group is whole), base 2 of the next group, then the stop.
    report = evaluate(tiny_run, EvalConfig(**FAST, eval_batch_size=2, open_book=False), StopAfter(5), SHORT)
    data = RunDir(tiny_run).read_eval()
    assert report.stopped and len(data["probes"]) == 2 and all(p["base"] and p["adapter"] for p in data["probes"])
    assert "stopped after 2 of" in data["note"]


def test_batched_evaluation_gives_the_answers_of_one_at_a_time(tiny_run, tiny_model_dir):
    """Greedy answers, log-probs, open-book answers and forgetting are the same whatever the batch size."""
    from kinject.training.pipeline import train

    config = TrainConfig(preset="cpu-demo", max_steps=2, learning_rate=5e-2, quantization="none")
    train(tiny_run, config, blocks=TINY_BLOCKS)
    gen = GenerationConfig(max_new_tokens=12)
    one = evaluate(tiny_run, EvalConfig(**FAST, eval_batch_size=1), generation=gen)
    many = evaluate(tiny_run, EvalConfig(**FAST, eval_batch_size=8), generation=gen)
    assert len(one.probes) == len(many.probes) > 8  # more than one group
    assert any(r.base.text != r.adapter.text for r in one.probes)  # the adapter answers differently: both sides count
    for a, b in zip(one.probes, many.probes, strict=True):
        for side in ("base", "adapter", "open_book"):
            x, y = a.side(side), b.side(side)
            assert (x is None) == (y is None)
            if x is not None:
                assert (x.text, x.correct, x.ended) == (y.text, y.correct, y.ended), (a.probe.id, side)
                assert (x.logprob is None) == (y.logprob is None)
                if x.logprob is not None:
                    assert x.logprob == pytest.approx(y.logprob, abs=1e-6)
    assert one.forgetting.kl_per_prompt == pytest.approx(many.forgetting.kl_per_prompt, abs=1e-6)
    assert one.forgetting.kl_tokens == many.forgetting.kl_tokens


def test_sampled_answers_do_not_depend_on_the_batch_size(tiny_run, tiny_model_dir):
    _zero_adapter(tiny_run, tiny_model_dir)
    gen = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=1.0)
    config = dict(**FAST, open_book=False, forgetting=False)
    one = evaluate(tiny_run, EvalConfig(**config, eval_batch_size=1), generation=gen)
    many = evaluate(tiny_run, EvalConfig(**config, eval_batch_size=4), generation=gen)
    assert [r.base.text for r in one.probes] == [r.base.text for r in many.probes]
    assert len({r.base.text for r in one.probes}) > 1


def test_the_quick_set_is_small_and_short(tiny_run):
    report = evaluate(tiny_run, EvalConfig(auto_probes=8, quick="on"), generation=GenerationConfig(max_new_tokens=200))
    assert report.settings["quick"] is True and report.settings["generation"]["max_new_tokens"] == 32
    assert report.settings["counts"]["retention"] == 4 and report.settings["counts"]["knowledge"] <= 4
    assert RunDir(tiny_run).section("generation")["max_new_tokens"] == 200  # the run keeps what was asked


def test_corpus_texts_of_a_run(tiny_run):
    texts = corpus_texts(RunDir(tiny_run))
    assert texts == [RunDir(tiny_run).load_corpus()[0]["text"]]
    assert "3,200 Gbps" in texts[0] and "H100" in texts[0]


def test_score_probes_is_the_scorer_of_the_report(tiny_run, tiny_model_dir):
    """The knowledge sweep scores with ``score_probes``: on the same model it must give the report's answers."""
    from kinject.models.generate import adapter_off, load_for_run

    _zero_adapter(tiny_run, tiny_model_dir)
    report = evaluate(tiny_run, EvalConfig(**FAST), generation=SHORT)
    loaded = load_for_run(tiny_run)
    probes = [r.probe for r in report.probes]
    with adapter_off(loaded.model):
        answers = score_probes(loaded.model, loaded.tokenizer, probes, SHORT)
    assert answers == [r.base for r in report.probes]
    assert [a.logprob for a in score_probes(loaded.model, loaded.tokenizer, probes, SHORT, logprob=False)] == [
        None
    ] * len(probes)


def test_no_gain_is_said_only_when_the_adapter_answers_no_more_than_the_base():
    from dataclasses import replace

    from kinject.eval.metrics import Scores
    from kinject.eval.report import EvalReport, no_gain

    base = Scores(0.25, None, None, None, None, knowledge_correct=1, knowledge_scored=4)
    report = EvalReport("run", "m", True, base, replace(base, knowledge_correct=1), None, [], {}, {})
    assert "(1 of 4 against 1 of 4)" in no_gain(report)
    assert no_gain(replace(report, adapter=replace(base, knowledge_correct=2))) == ""
    assert no_gain(replace(report, adapter=None, has_adapter=False)) == ""
    assert no_gain(replace(report, base=replace(base, knowledge_scored=0))) == ""  # no knowledge probe asked


def test_an_answer_that_ends_in_a_loop_is_counted_and_a_long_one_is_not():
    """Answers the bundled model gave: loops of a word pair, a phrase and a line; a long list and a cut answer that
    do not repeat are not loops, and a short answer never is."""
    from kinject.eval.metrics import Answer, ProbeResult, looping, summarize
    from kinject.eval.probes import Probe
    from kinject.eval.report import EvalReport

    loops = [
        "Romeo and Juliet is set in Verona, on the balcony" + " of the balcony" * 30,
        "The Nimbus 12 lasts for high-end" + ", high-end" * 40,
        "A moment of stillness, a fleeting sight,\n" * 6 + "A moment of stillness",
        "The story is also a Romeo and Juliet story. " * 3,
    ]
    not_loops = [
        "Painters: " + ", ".join(f"{i}. Titian ({1580 + i}-1610)" for i in range(1, 12)),
        "Breaks are just as important as the rest of the study session, as they allow your brain to rest and recharge",
        "Yes, yes, yes.",
        "Shakespeare wrote it.",
    ]
    assert all(looping(text) for text in loops) and not any(looping(text) for text in not_loops)
    results = [
        ProbeResult(Probe(f"r{i}", "retention", question="q?"), "chat", base=Answer(text, None, False, None))
        for i, text in enumerate(loops[:2] + not_loops)
    ]
    scores = summarize(results, "base")
    assert (scores.chat_looping, scores.chat_answers, scores.chat_ended) == (2, 6, 0)
    report = EvalReport("run", "m", False, scores, None, None, results, {}, {})
    assert re.search(r"chat_looping +2/6 +n/a", format_table(report))
