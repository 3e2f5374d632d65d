"""The web face's views as plain functions (no gradio, no browser): the status area, the evaluation's scores and
answers, the Runs tab's rows, two runs compared, and the CLI hints turned into the app's controls."""

from __future__ import annotations

import subprocess
import sys

import pytest
from damaged_runs import DAMAGES, Damage, make_run

from kinject.runs import RunDir
from kinject.runtime.jobs import JobManager, JobState
from kinject.web import state
from kinject.web.eval_view import eval_answers, eval_summary, score_text, show_eval
from kinject.web.views import RUNS_COLUMNS, cell_text, compare_runs, job_line, runs_table, status_text, training_line
from kinject.web.words import app_text, duration_text

SIDE = {"knowledge_accuracy": 0.25, "knowledge_correct": 1, "knowledge_scored": 4, "retention_accuracy": 1.0}
EVAL = {
    "created_at": "2026-12-01T10:00:00",
    "model": "tiny",
    "settings": {"counts": {"knowledge": 4, "retention": 2}, "quick": True, "generation": {"max_new_tokens": 32}},
    "base": SIDE,
    "adapter": {**SIDE, "knowledge_accuracy": 0.75, "knowledge_correct": 3, "retention_accuracy": 0.5},
    "forgetting": {"kl_mean": 0.1234, "kl_max": 0.5, "base_ppl": 10.0, "adapter_ppl": 12.5, "ppl_ratio": 1.25},
    "probes": [
        {
            "id": "k1",
            "kind": "knowledge",
            "question": "What GPUs do P5 instances have?",
            "answers": ["H100", "NVIDIA H100"],
            "base": {"text": "A100 GPUs.", "correct": False},
            "adapter": {"text": "H100 GPUs.", "correct": True},
        },
        {"id": "r1", "kind": "retention", "form": "completion", "prompt": "The capital of France is", "base": None},
    ],
}


@pytest.fixture
def runs(web_jobs) -> JobManager:
    """An empty runs folder and a job manager of their own (conftest's ``web_jobs``)."""
    return web_jobs


def _run(name: str, **config) -> RunDir:
    run = RunDir(state.RUNS_ROOT / name)
    run.path.mkdir(parents=True)
    run.write_config({"model": {"model": "tiny"}, **config})
    return run


def _no_plot(path) -> None:
    path.write_bytes(b"")


def test_the_views_need_no_gradio():
    code = "import sys, kinject.web.views, kinject.web.eval_view; sys.exit('gradio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_durations_and_job_lines():
    assert [duration_text(v) for v in (None, 45, 600, 7500)] == ["", "45 s", "10 min", "2 h 5 min"]
    running = JobState(run_dir="/r/p5", status="running", phase="train", phase_done=3, phase_total=10, eta_s=120)
    running.phase_unit = "step"
    assert job_line(running) == "running: training of p5 (train, 3/10 steps) · ETA 2 min"
    done = JobState(run_dir="/r/p5", status="done", phase="train", phase_done=10, phase_total=10, eta_s=5)
    assert job_line(done) == "done: training of p5"  # no phase or ETA once it ended
    assert training_line(JobState()) == ""
    trained = JobState(status="done", step=4, total=8, epoch=0.5, loss=1.23456, peak_memory_mb=1536.4)
    assert training_line(trained) == "Training: step 4/8 · epoch 0.50 · loss 1.235 · peak memory 1,536 MB"


def test_status_text_of_a_run_and_its_job(runs):
    assert status_text(None) == "No run selected."
    run = _run("p5")
    assert status_text("p5") == "**p5**: prepared, not trained yet."
    failed = JobState(run_dir=str(run.path), status="failed", step=2, total=20, epoch=0.2, loss=2.5)
    run.write_status({**failed.to_dict(), "error": "free some space, then resume with --resume"})
    text = status_text("p5")
    assert text.startswith("**p5** · failed: training of p5")
    assert "Training: step 2/20 · epoch 0.20 · loss 2.500" in text
    assert "**Error:** free some space, then press Resume (Train tab)" in text  # the app's control, not the flag
    with pytest.raises(state.WebError, match="Invalid run name"):
        status_text("../elsewhere")


def test_app_text_names_the_controls():
    assert app_text("x exists; choose another --out or pass --force to replace it") == (
        "x exists; choose another Run name, or tick “Replace an existing run of that name” (Prepare tab)"
    )
    assert app_text("try --no-use-qa --replay-share 0") == "try “Use qa” (untick it) set “Replay share” to 0"
    assert app_text("with --preset cpu-demo") == "with Preset “cpu-demo” (Train tab)"
    assert app_text("an --unknown-flag stays") == "an --unknown-flag stays"


def test_eval_summary_and_answers():
    summary = eval_summary(EVAL)
    assert "**Evaluated** 2026-12-01T10:00:00 · model `tiny` · 4 knowledge and 2 retention probes" in summary
    assert "(the quick set) · answers of at most 32 tokens" in summary
    assert "| knowledge (facts of your pages) | 0.25 (1/4) | 0.75 (3/4) |" in summary
    assert "| answers that ended their turn | – | – |" in summary  # not measured
    assert "KL(base ‖ adapter) 0.123 nats/token (max 0.5)" in summary and "10.0 → 12.5 (ratio 1.25)" in summary
    assert "no more knowledge probes" not in summary
    assert score_text({"knowledge_logprob": -1.23456}, "knowledge_logprob") == "-1.235"
    assert score_text({"chat_looping": 2, "chat_answers": 17}, "chat_looping") == "2/17"
    assert "| answers caught in a loop (one phrase said over and over) | – | – |" in summary  # an eval.json before
    assert eval_answers(EVAL) == [
        [
            "k1",
            "knowledge",
            "What GPUs do P5 instances have?",
            "H100 / NVIDIA H100",
            "A100 GPUs.",
            "✗",
            "H100 GPUs.",
            "✓",
        ],
        ["r1", "retention", "The capital of France is …", "", "", "–", "", "–"],
    ]


def test_show_eval_of_a_run(runs):
    assert show_eval(None) == ("No run selected.", None, [])
    run = _run("p5")
    assert show_eval("p5")[0] == "No evaluation yet for this run: press Evaluate."
    run.write_eval(EVAL, "", _no_plot)
    summary, plot, answers = show_eval("p5")
    assert summary == eval_summary(EVAL) and plot and answers == eval_answers(EVAL)


def test_runs_table_rows(runs):
    assert runs_table() == []
    run = _run("p5", train={"preset": "cpu-demo"})
    run.append_metric({"step": 1, "loss": 2.0})
    run.append_metric({"step": 2, "loss": 1.23456})
    run.write_eval(EVAL, "", _no_plot)
    job = JobState(run_dir=str(run.path), status="stopped", step=2, total=20)
    run.write_status(job.to_dict())
    _run("fresh")
    (state.RUNS_ROOT / "not-a-run").mkdir()  # no config.yaml: not listed
    rows = {r[0]: dict(zip(RUNS_COLUMNS, r, strict=True)) for r in runs_table()}
    assert set(rows) == {"p5", "fresh"}
    p5 = rows["p5"]
    assert (p5["model"], p5["preset"], p5["steps"], p5["final loss"]) == ("tiny", "cpu-demo", "2/20", "1.235")
    assert p5["knowledge"] == "0.25 (1/4) → 0.75 (3/4) (quick)" and p5["KL"] == "0.123" and p5["status"] == "stopped"
    assert p5["date"]
    assert rows["fresh"]["status"] == "prepared" and rows["fresh"]["knowledge"] == ""


def test_compare_runs(runs):
    assert compare_runs("a", None) == "Choose two runs to compare."
    first, second = _run("a", train={"preset": "cpu-demo"}), _run("b", train={"preset": "knowledge"})
    first.write_eval(EVAL, "", _no_plot)
    second.write_eval({"base": SIDE, "probes": [{**EVAL["probes"][0], "adapter": None}]}, "", _no_plot)
    text = compare_runs("a", "b")
    lines = text.splitlines()
    assert lines[:2] == ["| | a | b |", "|---|---|---|"]
    assert "| preset | cpu-demo | knowledge |" in lines
    assert "| knowledge (facts of your pages) (adapter) | 0.75 (3/4) | 0.25 (1/4) |" in lines  # b: the base's
    assert "| KL(base ‖ adapter) | 0.123 | – |" in lines
    # The probe both answered, each side's answer escaped for a markdown cell.
    assert "| k1 (knowledge) | ✓ H100 GPUs\\. | ✗ A100 GPUs\\. |" in lines
    assert cell_text("a|b *c*\nd") == "a\\|b \\*c\\* d"
    with pytest.raises(state.WebError, match="Invalid run name '../b'"):
        compare_runs("a", "../b")


def test_a_quick_or_stopped_evaluation_never_replaces_a_complete_full_one(runs):
    """Each evaluation is written under its own name: after a complete full one, a stopped and a quick one land
    beside it; the Runs table (and the card, which reads the same ``read_eval``) keep showing the full one, and the
    Evaluate tab shows the last one with a line saying the full one is kept."""
    run = _run("p5")
    full = {**EVAL, "settings": {**EVAL["settings"], "quick": False}}
    assert run.write_eval(full, "full", _no_plot) == "full"
    stopped = {**EVAL, "stopped": True, "adapter": {**SIDE, "knowledge_correct": 0, "knowledge_accuracy": 0.0}}
    assert run.write_eval(stopped, "stopped", _no_plot) == "stopped"
    assert not run.read_eval().get("stopped") and run.read_eval()["adapter"]["knowledge_correct"] == 3
    assert run.latest_eval_kind() == "stopped" and run.read_eval("stopped")["stopped"] is True
    assert {"eval.json", "eval-stopped.json", "eval-stopped.md"} <= {p.name for p in run.path.iterdir()}
    row = dict(zip(RUNS_COLUMNS, runs_table()[0], strict=True))
    assert row["knowledge"] == "0.25 (1/4) → 0.75 (3/4)"  # the full one, with no mark
    summary, _, _ = show_eval("p5")
    assert summary.startswith("*This is the last, stopped evaluation. The complete full evaluation is kept")
    assert run.write_eval(EVAL, "quick", _no_plot) == "quick"
    assert run.best_eval_kind() == "full" and run.latest_eval_kind() == "quick"
    assert run.eval_markdown() == "full" and run.eval_markdown("quick") == "quick"
    assert run.write_eval(full, "full again", _no_plot) == "full"  # a new full one replaces the old full one
    assert run.eval_markdown() == "full again" and not show_eval("p5")[0].startswith("*This is the last")


def test_without_a_full_evaluation_the_runs_table_says_which_it_shows(runs):
    run = _run("p5")
    run.write_eval({**EVAL, "stopped": True}, "", _no_plot)
    assert run.best_eval_kind() == "stopped" and run.read_eval()["stopped"] is True
    row = dict(zip(RUNS_COLUMNS, runs_table()[0], strict=True))
    assert row["knowledge"].endswith(" (stopped)")
    assert not show_eval("p5")[0].startswith("*This is the last")  # nothing else is kept: no such line


def _card_run(name: str, urls: list[str]) -> RunDir:
    """A run with an adapter (its config is enough for the card) and ``urls`` as its fetched sources."""
    run = _run(name)
    run.adapter_dir.mkdir(parents=True)
    (run.adapter_dir / "adapter_config.json").write_text("{}")
    rows = [
        {"input": u, "kind": "url", "status": "ok", "sha256": f"{i:064x}", "tokens": 9} for i, u in enumerate(urls)
    ]
    run.write_sources(rows)
    return run


def test_the_card_preview_warns_of_sources_on_this_machine_or_a_private_network(runs):
    from kinject.web.views import card_preview

    _card_run("p5", ["https://example.com/p5", "http://127.0.0.1:8000/p5.html", "http://192.168.1.5/wiki"])
    preview = card_preview("p5", "alice/p5")
    warning = next(line for line in preview.splitlines() if line.startswith("**Warning:**"))
    assert "`http://127.0.0.1:8000/p5.html` (a loopback address)" in warning
    assert "`http://192.168.1.5/wiki` (a private-network address)" in warning
    assert "example.com" not in warning

    _card_run("public", ["https://example.com/p5"])
    assert "Warning" not in card_preview("public", "alice/p5")


def test_the_card_preview_without_a_repo_is_named_after_the_run(runs):
    from kinject.web.views import card_preview

    _card_run("p5-facts", ["https://example.com/p5"])
    preview = card_preview("p5-facts", "  ")
    assert "NAME" not in preview, "no placeholder title"
    assert "\n# p5-facts\n" in preview and "Repo field (Publish tab) is not set yet" in preview
    named = card_preview("p5-facts", "alice/p5-card")
    assert "\n# p5-card\n" in named and "not set yet" not in named


def test_the_card_preview_shows_the_metadata_header_as_a_code_block(runs):
    from kinject.web.views import card_preview

    _card_run("p5", ["https://example.com/p5"])
    lines = card_preview("p5", "alice/p5").splitlines()
    assert "---" not in lines, "no front matter for Markdown to run together"
    start = lines.index("```yaml")
    end = lines.index("```", start)
    header = lines[start + 1 : end]
    assert "library_name: peft" in header and "pipeline_tag: text-generation" in header
    assert lines.index("# p5") > end, "the header comes above the card's body"


def test_the_source_view_shows_the_title_once_as_training_sees_it(runs, tiny_model_dir):
    """A page's heading opens its extracted text: the view shows the corpus's text column as it is (what training
    reads), without the title added before it."""
    from pathlib import Path

    from kinject.corpus.prepare import prepare
    from kinject.settings.sources import InputsConfig
    from kinject.settings.stages import BlocksConfig, ModelConfig, PrepareConfig
    from kinject.web.views import source_view

    page = Path(__file__).parent / "data" / "samples" / "aws-summit-nyc-2023" / "ec2-p5.html"
    inputs = InputsConfig(files=[str(page)])
    config = PrepareConfig(inputs=inputs, model=ModelConfig(model=str(tiny_model_dir)), blocks=BlocksConfig(64))
    prepare(config, state.RUNS_ROOT / "p5")
    (doc,) = RunDir(state.RUNS_ROOT / "p5").load_corpus().to_list()
    title = "Amazon EC2 P5 instances are now generally available"
    assert doc["title"] == title and doc["text"].startswith(title + "\n\n")  # the page's heading, in the text
    text, _ = source_view("p5", doc["source"])
    assert text == doc["text"] and text.count(title) == 1


def test_the_augmentation_table_says_why_a_distilled_row_kept_its_clause(runs):
    """With answers "distill" a teacher's answer that misses its fact is replaced by the clause, not dropped: the
    table shows the row as kept, with the clause, and why the teacher's answer was not used."""
    from kinject.web.views import augmentation_table

    run = _run("distilled")
    rows = [
        {
            "kind": "qa",
            "passage": "d1p1",
            "question": "When does the T2 ship?",
            "answer": "The T2 ships in 2026.",
            "kept": True,
            "reason": "",
            "teacher": "Soon.",
            "teacher_reason": "does not state 2026",
        },
        {
            "kind": "qa",
            "passage": "d1p1",
            "question": "How fast is the V3?",
            "answer": "It peaks at 3.2 GHz.",
            "kept": True,
            "reason": "",
            "teacher": "It peaks at 3.2 GHz.",
            "teacher_reason": "",
        },
    ]
    run.save_augmentation("qa-abc", rows, {"kind": "qa", "key": "qa-abc"})
    table = augmentation_table("distilled")
    assert table[0][2:] == [
        "When does the T2 ship?",
        "The T2 ships in 2026.",
        "yes",
        "the generator's answer was not used (does not state 2026); the source's words are the answer",
    ]
    assert table[1][3:] == ["It peaks at 3.2 GHz.", "yes", ""]


# --- A damaged run: named where it is read, and never in another run's way -----------------------------------------
EVAL_DAMAGES = {k: d for k, d in DAMAGES.items() if d.file == "eval.json"}
CARD_DAMAGES = {k: d for k, d in DAMAGES.items() if d.file in ("eval.json", "config.yaml")}


def _good_and_damaged(damage: Damage) -> RunDir:
    """A healthy, evaluated run "good" and a run "bad" with ``damage``; returns "bad"."""
    make_run(state.RUNS_ROOT, "good").write_eval(EVAL, "", _no_plot)
    bad = make_run(state.RUNS_ROOT, "bad")
    damage.apply(bad)
    return bad


def _names(message: str, run: RunDir, damage: Damage) -> bool:
    return str(run.path / damage.file) in message and damage.named in message


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_run_is_named_in_the_runs_table_and_spares_the_others(runs, damage):
    _good_and_damaged(damage)
    rows = {r[0]: dict(zip(RUNS_COLUMNS, r, strict=True)) for r in runs_table()}
    assert rows["bad"]["status"].startswith(f"damaged: {damage.file}: ") and damage.named in rows["bad"]["status"]
    assert rows["good"]["knowledge"] == "0.25 (1/4) → 0.75 (3/4) (quick)" and rows["good"]["status"] == "prepared"


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_compare_refuses_a_damaged_run_naming_the_file_and_field(runs, damage):
    bad = _good_and_damaged(damage)
    make_run(state.RUNS_ROOT, "other").write_eval(EVAL, "", _no_plot)
    with pytest.raises(state.WebError) as info:
        compare_runs("good", "bad")
    assert str(info.value).startswith("Run bad cannot be compared: ") and _names(str(info.value), bad, damage)
    assert "| preset |  |  |" in compare_runs("good", "other").splitlines()  # the healthy runs compare as before


@pytest.mark.parametrize("damage", EVAL_DAMAGES.values(), ids=EVAL_DAMAGES.keys())
def test_show_eval_of_a_damaged_evaluation_names_the_file_and_field(runs, damage):
    bad = _good_and_damaged(damage)
    summary, plot, answers = show_eval("bad")
    assert summary.startswith("The evaluation of bad cannot be shown: ") and _names(summary, bad, damage)
    assert (plot, answers) == (None, [])
    assert show_eval("good")[0] == eval_summary(EVAL)


@pytest.mark.parametrize("damage", CARD_DAMAGES.values(), ids=CARD_DAMAGES.keys())
def test_the_card_preview_of_a_damaged_run_names_the_file_and_field(runs, damage):
    """A cut-off eval.json included: a message, not json's raw JSONDecodeError."""
    from kinject.web.views import card_preview

    bad = _good_and_damaged(damage)
    with pytest.raises(state.WebError) as info:
        card_preview("bad", "alice/bad")
    assert str(info.value).startswith("No model card for run bad: ") and _names(str(info.value), bad, damage)
    assert "\n# good\n" in card_preview("good", "alice/good")
