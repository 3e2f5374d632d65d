"""The web face's handlers that need gradio's update objects but no browser: the one status poll follows a job
whatever started it."""

from __future__ import annotations

import threading

import pytest
from damaged_runs import DAMAGES, Damage, make_run

from kinject.runs import RunDir
from kinject.runtime.jobs import JobManager
from kinject.web import state
from kinject.web.handlers import follow_job

STOP = 3  # the Stop button's place in button_states (poll returns status, plot, key, timer, then those)


@pytest.fixture
def jobs(web_jobs) -> JobManager:
    return web_jobs


def test_the_poll_follows_a_job_that_another_handler_starts(jobs, tmp_path):
    """Evaluate, Prepare, Merge and Push start their job in their own handler; ``follow_job``, wired before it on the
    same click, turns the status poll on at once, for every one of them; the poll's next tick enables Stop while
    the job runs and turns itself off when nothing runs (a handler that refused to start a job)."""
    from kinject.web.handlers import poll

    assert follow_job(None, None)[3].active is True  # nothing runs yet: the job's handler goes next
    assert poll(None, None)[3].active is True  # ... and may wait in the queue: the poll waits for it a while
    state.FOLLOW_UNTIL = 0.0  # that while is over
    assert poll(None, None)[3].active is False  # a tick with nothing running stops polling
    release = threading.Event()
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    jobs.submit(RunDir(run_dir), "evaluate", lambda recorder: release.wait(10), persist=False)
    try:
        polled = poll(None, None)
        timer, buttons = polled[3], polled[4:]
        assert timer.active is True and buttons[STOP]["interactive"] is True
    finally:
        release.set()
        jobs.wait(10)
    polled = poll(None, None)
    assert polled[3].active is False and polled[4:][STOP]["interactive"] is False


def test_the_forms_lock_while_a_job_runs(jobs, tmp_path, monkeypatch):
    """The poll's last outputs are the forms' controls: not interactive while a job runs, interactive after."""
    from kinject.web.handlers import poll

    monkeypatch.setattr(state, "LOCKED_CONTROLS", 5)
    assert [u["interactive"] for u in poll(None, None)[-5:]] == [True] * 5
    release = threading.Event()
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    jobs.submit(RunDir(run_dir), "evaluate", lambda recorder: release.wait(10), persist=False)
    try:
        assert [u["interactive"] for u in poll(None, None)[-5:]] == [False] * 5
    finally:
        release.set()
        jobs.wait(10)
    assert [u["interactive"] for u in poll(None, None)[-5:]] == [True] * 5


def test_no_poll_covers_the_forms_with_its_progress():
    """Every event that polls (the timer, a run's selection, a job's start) writes the forms' locks, so each hides its
    progress: an overlay over the forms would take the user's clicks while a loaded machine runs the poll."""
    from kinject.web.layout import build_ui

    demo = build_ui()
    timer = next(c["id"] for c in demo.config["components"] if c["type"] == "timer")
    polls = [d for d in demo.config["dependencies"] if timer in d["outputs"]]
    assert len(polls) >= 5  # the timer, follow_job on each job's button, the selection, a start and a resume
    assert {d["show_progress"] for d in polls} == {"hidden"}, [d["api_name"] for d in polls]


def test_stop_says_so_at_once_and_turns_itself_off(jobs, tmp_path):
    """Pressing Stop: the status area says "Stopping" from the next poll on and Stop stays off while the job runs
    on to its next check; once it ends, neither remains."""
    from kinject.web.handlers import button_states, run_status, stop_job

    release = threading.Event()
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    jobs.submit(RunDir(run_dir), "evaluate", lambda recorder: release.wait(10), persist=False)
    try:
        assert button_states(None)[STOP]["interactive"] is True
        assert "Stopping" not in run_status(None)
        assert stop_job(None).startswith("**Stopping** evaluation of r at its next check")
        assert jobs.running() and jobs.stopping()
        assert button_states(None)[STOP]["interactive"] is False
    finally:
        release.set()
        jobs.wait(10)
    assert not jobs.stopping() and "Stopping" not in run_status(None)


def test_compare_chat_streams_both_sides_at_once_and_stop_ends_both(monkeypatch):
    """Compare mode reads both answers at once (a server that batches answers both together, rather than the base
    waiting for the adapter's whole answer), and closing the stream (gradio's cancel from "Stop answering") stops
    every side's reading."""
    from kinject.web import chat

    read: dict[str | None, int] = {"adapter": 0, None: 0}
    both_started = threading.Barrier(2, timeout=5)

    def fake_stream(endpoint, model, messages, generation):
        both_started.wait()  # fails (BrokenBarrierError) unless the two sides are read at the same time
        for i in range(1000):
            read[model] += 1
            yield f"{model or 'base'}{i} "
            threading.Event().wait(0.005)

    class Target:
        def endpoint_of(self, model):
            return "http://127.0.0.1:1"

    monkeypatch.setattr(chat, "stream_chat", fake_stream)
    histories = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "hi"}]]
    stream = chat._stream_sides(Target(), ["adapter", None], histories, None, [])
    seen = []
    for left, right, _ in stream:
        seen.append((left[-1]["content"], right[-1]["content"]))
        if len(seen) == 20:
            break
    stream.close()  # what a cancelled gradio event does to its generator
    assert any("adapter0" in a and "base0" in b for a, b in seen), "both sides show their answer as it streams"
    threading.Event().wait(0.2)
    counts = dict(read)
    threading.Event().wait(0.2)
    assert read == counts and max(counts.values()) < 1000, "closed: neither side reads on"


def test_the_evaluate_tab_says_what_evaluate_runs_and_what_the_full_set_takes(tmp_path, monkeypatch):
    """Quick 'auto' on a CPU runs the quick set, and the line gives the full set's size and time (from the run's
    last full evaluation, else scaled from a quick one, else a reference)."""
    import torch

    from kinject.runs import RunDir
    from kinject.settings.stages import EvalConfig, GenerationConfig
    from kinject.web.eval_view import eval_plan_text

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.write_config({"model": {"model": "x"}})
    gen = GenerationConfig(max_new_tokens=200)
    text = eval_plan_text(run, EvalConfig(quick="auto", auto_probes=0), gen)
    assert text.startswith("**Evaluate runs the quick set** (Quick: auto, and this machine has no GPU)")
    assert "answers of up to 32 tokens" in text and "answers of up to 200 tokens" in text
    assert "not timed for this run yet" in text
    quick = {"settings": {"quick": True, "counts": {"knowledge": 0}, "generation": {"max_new_tokens": 32}}}
    quick["timings"] = {"load_s": 1.0, "probes_s": 16.0}
    quick["probes"] = [{}] * 8
    run.write_eval(quick, "", lambda path: path.write_bytes(b""))
    assert "scaled from this run's last quick evaluation" in eval_plan_text(run, EvalConfig(auto_probes=0), gen)
    full = {"settings": {"quick": False}, "timings": {"total_s": 300.0}, "probes": []}
    run.write_eval(full, "", lambda path: path.write_bytes(b""))
    text = eval_plan_text(run, EvalConfig(quick="off", auto_probes=0), gen)
    assert text.startswith("**Evaluate runs the full set**") and "last full evaluation took 5 min" in text


def test_a_copied_run_names_itself_in_the_status(tmp_path, monkeypatch):
    """status.json written in the old folder names that folder; read from the copy, the copy's name shows."""
    import shutil

    from kinject.runs import RunDir
    from kinject.runtime.jobs import JobState
    from kinject.web.views import status_text

    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path)
    old = RunDir(tmp_path / "p5")
    old.path.mkdir()
    old.write_config({"model": {"model": "x"}})
    old.write_status(JobState(run_dir=str(old.path), status="done", kind="train").to_dict())
    shutil.copytree(old.path, tmp_path / "copy")
    text = status_text("copy")
    assert "training of copy" in text and "training of p5" not in text


def test_a_failed_prepare_leaves_the_status_on_the_selected_run(tmp_path, monkeypatch):
    """The picker still shows the selected run after a prepare fails, and so does the status area (not "No run
    selected.")."""
    from kinject.runs import RunDir
    from kinject.runtime.jobs import JobState
    from kinject.web.job_handlers import do_prepare

    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path)
    run = RunDir(tmp_path / "p5")
    run.path.mkdir()
    run.write_config({"model": {"model": "x"}})
    run.write_status(JobState(run_dir=str(run.path), status="done", kind="train").to_dict())
    _, summary, status, *_ = next(iter(do_prepare("new", False, "p5", urls="", files=None)))
    assert summary.startswith("**Nothing prepared.**")
    assert "**p5**" in status and "No run selected" not in status


def test_a_chat_side_that_fails_unexpectedly_is_an_error_not_an_empty_answer(monkeypatch):
    import gradio as gr

    from kinject.web import chat

    def broken(endpoint, model, messages, generation):
        raise ValueError("bad frame")
        yield ""

    class Target:
        def endpoint_of(self, model):
            return "http://127.0.0.1:1"

    monkeypatch.setattr(chat, "stream_chat", broken)
    stream = chat._stream_sides(Target(), ["adapter"], [[{"role": "user", "content": "hi"}]], None, [])
    with pytest.raises(gr.Error, match="bad frame"):
        list(stream)


def test_a_damaged_evaluation_file_does_not_break_the_evaluate_line(tmp_path):
    from kinject.runs import RunDir
    from kinject.settings.stages import EvalConfig, GenerationConfig
    from kinject.web.eval_view import eval_plan_text

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.write_config({"model": {"model": "x"}})
    (run.path / run.eval_files("full")[0]).write_text("{not json")
    text = eval_plan_text(run, EvalConfig(quick="off", auto_probes=0), GenerationConfig())
    assert text.startswith("**Evaluate runs the full set**") and "unreadable" in text


# --- A damaged run: the page, the poll, the settings and a delete beside it ----------------------------------------
def _good_and_damaged(damage: Damage) -> RunDir:
    """A healthy run "good" and, newer, a run "bad" with ``damage`` (the page selects it on load); returns "bad"."""
    make_run(state.RUNS_ROOT, "good")
    bad = make_run(state.RUNS_ROOT, "bad")
    damage.apply(bad)
    return bad


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_the_page_loads_beside_a_damaged_run_and_its_poll_and_settings_name_the_damage(jobs, damage):
    """Loading the page, polling and reading the Train form's settings never raise for a damaged run: the status
    area names a damaged status.json or metrics.jsonl (file and field), the form warns of a damaged config.yaml and
    shows the defaults; the healthy run is used as before."""
    import warnings

    from kinject.web.forms import form_defaults, train_form_values
    from kinject.web.handlers import on_load, poll, run_settings

    bad = _good_and_damaged(damage)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        picker, table, *_ = on_load()
        status = poll("bad")[0]
        settings = run_settings("bad")
    named = str(bad.path / damage.file)
    assert picker["choices"] == ["bad", "good"] and [row[-1] for row in table][1] == "prepared"
    assert table[0][-1].startswith(f"damaged: {damage.file}: ")
    if damage.file in ("status.json", "metrics.jsonl"):
        assert f"**bad** cannot be used: {named} is damaged: " in status and damage.named in status
    if damage.file == "config.yaml":
        defaults = form_defaults()
        assert settings == [*train_form_values(defaults), defaults["preset"]]
        assert any(named in str(w.message) and damage.named in str(w.message) for w in warned), warned
    assert poll("good")[0] == "**good**: prepared, not trained yet."


def test_deleting_a_run_beside_a_damaged_one_reports_the_delete(jobs, capsys):
    """The delete of a healthy run says it deleted it and shows the list with the damaged run in it: a refresh that
    raises once the run is gone must not tell the user the delete failed."""
    from kinject.web.handlers import delete_run, run_settings

    bad = _good_and_damaged(DAMAGES["status is text"])
    picker, table, confirm, *form = delete_run("good", "good")
    assert not (state.RUNS_ROOT / "good").exists() and "Deleted run good." in capsys.readouterr().out
    assert picker["choices"] == ["bad"] and confirm == ""
    assert form == run_settings("bad")  # the Train form shows the run now selected
    assert [row[0] for row in table] == ["bad"] and table[0][-1].startswith("damaged: status.json: ")
    assert bad.is_run()


def test_a_list_that_cannot_be_refreshed_after_a_delete_is_reported_apart(jobs, capsys, monkeypatch):
    from kinject.web import handlers

    make_run(state.RUNS_ROOT, "good")

    def unreadable() -> list:
        raise OSError("the runs folder is unreadable")

    monkeypatch.setattr(handlers, "runs_table", unreadable)
    with pytest.warns(UserWarning, match=r"Run good was deleted, but the runs list could not be refreshed \(the runs"):
        picker, table, confirm, *form = handlers.delete_run("good", "good")
    assert not (state.RUNS_ROOT / "good").exists() and "Deleted run good." in capsys.readouterr().out
    assert confirm == ""
