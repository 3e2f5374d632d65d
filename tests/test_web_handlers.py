"""The web face's handlers that need gradio's update objects but no browser: the one status poll follows a job
whatever started it."""

from __future__ import annotations

import threading

import pytest

from kinject.jobs import JobManager
from kinject.web import state
from kinject.web.handlers import follow_job

STOP = 3  # the Stop button's place in button_states (poll returns status, plot, key, timer, then those)


@pytest.fixture
def jobs(tmp_path, monkeypatch) -> JobManager:
    manager = JobManager()
    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs")
    monkeypatch.setattr(state, "JOBS", manager)
    return manager


def test_the_poll_follows_a_job_that_another_handler_starts(jobs, tmp_path):
    """Evaluate, Prepare, Merge and Push start their job in their own handler; ``follow_job``, on the same click,
    waits for that job and returns the poll with the timer on and Stop enabled (before, only Start did)."""
    release = threading.Event()
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)

    def start_later() -> None:
        threading.Event().wait(0.3)  # the other handler validates its form first
        jobs.submit(run_dir, "evaluate", lambda recorder: release.wait(10), persist=False)

    threading.Thread(target=start_later).start()
    try:
        polled = follow_job(None, None)
        timer, buttons = polled[3], polled[4:]
        assert timer.active is True and buttons[STOP]["interactive"] is True
    finally:
        release.set()
        jobs.wait(10)
    polled = follow_job(None, None, wait_s=0.2)
    assert polled[3].active is False and polled[4:][STOP]["interactive"] is False


def test_stop_says_so_at_once_and_turns_itself_off(jobs, tmp_path):
    """Pressing Stop: the status area says "Stopping" from the next poll on and Stop stays off while the job runs
    on to its next check; once it ends, neither remains."""
    from kinject.web.handlers import button_states, run_status, stop_job

    release = threading.Event()
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    jobs.submit(run_dir, "evaluate", lambda recorder: release.wait(10), persist=False)
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
