"""The app in a real browser: Playwright drives Debian's chromium through Prepare, Train and Chat (compare mode) on
a loopback page and the tiny model, saving a screenshot of each step under tests/artifacts/ (ignored by git).

Skipped, with the reason, only where chromium or Playwright is missing (the Makefile's test setup installs both
where it can)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kinject.settings.services import AppConfig

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"


@contextmanager
def browser_page(url: str) -> Iterator[Any]:
    """Chromium at 1400x1000 on ``url``; a failure inside leaves tests/artifacts/failure.png."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            yield page
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()


def _missing() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not Path(CHROMIUM).is_file():
        return f"chromium is not installed ({CHROMIUM}); `make test` installs it with apt-get where it can"
    return ""


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_missing()), reason=_missing() or "ok")]


@pytest.fixture
def app_url(request, tmp_path, monkeypatch):
    """The app on a free loopback port. Parametrized indirectly with seconds, the run picker's change shows the run's
    evaluation that much later (a loaded machine), so the events after it come late."""
    import functools
    import time

    from kinject.web import layout, state
    from kinject.web.layout import build_ui

    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs")
    delay = getattr(request, "param", 0)
    if delay:
        show_eval = layout.show_eval

        @functools.wraps(show_eval)
        def slow(*args, **kwargs):
            time.sleep(delay)
            return show_eval(*args, **kwargs)

        monkeypatch.setattr(layout, "show_eval", slow)
    demo = build_ui(AppConfig(allow_private_urls=True))  # the operator lets the test fetch from loopback
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()
        state.CHAT.stop()


def test_prepare_train_and_chat_in_compare_mode(app_url, site, tiny_model_dir):
    from playwright.sync_api import expect

    with browser_page(app_url) as page:
        # Prepare: one loopback page, the tiny model, small blocks.
        page.get_by_role("textbox", name="URLs").fill(f"{site}/ec2-p5.html")
        page.get_by_role("textbox", name=re.compile(r"^Model\b")).first.fill(str(tiny_model_dir))
        page.get_by_role("spinbutton", name="Block size").first.fill("64")
        page.get_by_role("textbox", name="Run name").fill("p5")
        page.get_by_role("button", name="Prepare", exact=True).click()
        expect(page.get_by_text("sources used")).to_be_visible(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "1-prepare.png"))

        # Train: the cpu-demo preset (raw text, no augmentation), a few steps.
        page.get_by_role("tab", name="Train").click()
        preset = page.get_by_role("combobox", name="Preset", exact=True)
        preset.click()
        page.get_by_role("option", name="cpu-demo").click()
        epochs = page.get_by_role("spinbutton", name=re.compile(r"^Epochs\b")).first
        expect(epochs).to_have_value("20", timeout=30_000)  # the preset's values are in
        epochs.fill("2")
        page.get_by_role("combobox", name="Quantization", exact=True).click()
        page.get_by_role("option", name="none").click()
        page.get_by_role("checkbox", name="Eval at end").uncheck()
        expect(preset).to_have_value("cpu-demo")
        expect(epochs).to_have_value("2")
        page.get_by_role("button", name="Start", exact=True).click()
        expect(page.get_by_text("done", exact=False).first).to_be_visible(timeout=300_000)
        page.screenshot(path=str(ARTIFACTS / "2-train.png"))
        expect(page.locator("#train-cli")).to_contain_text("CLI equivalent")
        page.reload()  # the run's CLI line comes back with it (kept in the browser)
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#train-cli")).to_contain_text("--preset cpu-demo", timeout=30_000)

        # Chat: adapter and base side by side.
        page.get_by_role("tab", name="Chat").click()
        page.get_by_role("checkbox", name="Compare with the base model").check()
        page.get_by_role("textbox", name="Message").fill("What GPUs do P5 instances have?")
        page.get_by_role("button", name="Send", exact=True).click()
        # One answer on each side (the tiny random model's answers may be blank, so "attached", not "visible").
        bots = page.locator("[data-testid='bot']")
        bots.nth(1).wait_for(state="attached", timeout=120_000)
        users = page.locator("[data-testid='user']")
        expect(users).to_have_count(2)  # the question on both sides
        page.screenshot(path=str(ARTIFACTS / "3-chat-compare.png"))
        assert bots.count() == 2


def _badges(page) -> int:
    """Error badges on components (gradio's status tracker shows a span.error "Error" on an event's outputs); an
    error toast, a message the user closes, is not one."""
    return page.evaluate(
        """() => [...document.querySelectorAll("span.error")].filter(
            e => e.offsetParent !== null && !e.closest("[class*=toast]")).length"""
    )


@pytest.mark.parametrize("app_url", [4.0], indirect=True)
def test_no_error_badge_after_a_failed_then_successful_prepare_and_scores_above_answers(app_url, site, tiny_model_dir):
    """Also: the Train form filled at once after a prepare keeps its values while the new run's selection is slow."""
    from playwright.sync_api import expect

    with browser_page(app_url) as page:
        # A prepare that fails (no URL, no file), then one that succeeds: no error badge is left anywhere.
        page.get_by_role("textbox", name="Run name").fill("p5")
        page.get_by_role("button", name="Prepare", exact=True).click()
        expect(page.get_by_text("Nothing prepared")).to_be_visible(timeout=60_000)
        page.get_by_role("textbox", name="URLs").fill(f"{site}/ec2-p5.html")
        page.get_by_role("textbox", name=re.compile(r"^Model\b")).first.fill(str(tiny_model_dir))
        page.get_by_role("spinbutton", name="Block size").first.fill("64")
        page.get_by_role("button", name="Prepare", exact=True).click()
        expect(page.get_by_text("sources used")).to_be_visible(timeout=120_000)
        assert _badges(page) == 0

        # Train a long cpu-demo run, screenshot it mid-training, stop it; its evaluation is then asked for.
        page.get_by_role("tab", name="Train").click()
        page.get_by_role("combobox", name="Preset", exact=True).click()
        page.get_by_role("option", name="cpu-demo").click()
        page.get_by_role("combobox", name="Quantization", exact=True).click()
        page.get_by_role("option", name="none").click()
        page.get_by_role("checkbox", name="Eval at end").uncheck()
        epochs = page.get_by_role("spinbutton", name=re.compile(r"^Epochs\b")).first
        epochs.fill("400")
        # The run's selection is still showing its evaluation (4 s late); once its events reach the Evaluate tab's
        # plan, the form is still as filled.
        page.get_by_role("tab", name="Evaluate").click()
        expect(page.locator("#eval-plan")).to_contain_text("Evaluate runs", timeout=120_000)
        page.get_by_role("tab", name="Train").click()
        expect(epochs).to_have_value("400")
        expect(page.get_by_role("combobox", name="Preset", exact=True)).to_have_value("cpu-demo")
        expect(page.get_by_role("checkbox", name="Eval at end")).not_to_be_checked()
        page.get_by_role("button", name="Start", exact=True).click()
        expect(page.get_by_text(re.compile(r"Training: step [1-9]\d*/"))).to_be_visible(timeout=120_000)
        page.wait_for_timeout(2500)  # a few points on the loss plot
        page.screenshot(path=str(ARTIFACTS / "app-training.png"))
        page.get_by_role("button", name="Stop", exact=True).click()
        expect(page.get_by_text(re.compile(r"stopped: training of p5"))).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name="Resume from checkpoint")).to_be_enabled(timeout=10_000)

        # Evaluate (quick set): the score table comes first, the answers below it, folded.
        page.get_by_role("tab", name="Evaluate").click()
        page.get_by_role("combobox", name="Quick", exact=True).click()
        page.get_by_role("option", name="on", exact=True).click()
        page.get_by_role("button", name="Evaluate", exact=True).click()
        scores = page.locator("#eval-scores table")
        expect(scores).to_be_visible(timeout=300_000)
        answers = page.locator("#eval-answers")
        assert scores.bounding_box()["y"] < answers.bounding_box()["y"]
        expect(page.get_by_text(re.compile(r"\d\.\d\d \(\d+/\d+\)")).first).to_be_visible()
        assert _badges(page) == 0
        page.screenshot(path=str(ARTIFACTS / "app-evaluate.png"), full_page=True)

        # Ask with no question fails, with an error on the answers; the next question clears it.
        page.get_by_role("tab", name="Ask").click()
        page.get_by_role("textbox", name="Question").fill("")
        page.get_by_role("button", name="Ask both", exact=True).click()
        expect(page.get_by_text("Type a question in the Question box.").first).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)
        failed = _badges(page)
        page.get_by_role("textbox", name="Question").fill("What GPUs do P5 instances have?")
        page.get_by_role("button", name="Ask both", exact=True).click()
        expect(page.get_by_role("textbox", name="With adapter")).not_to_have_value("", timeout=120_000)
        page.wait_for_timeout(500)
        assert failed == 2, "the failed ask marks both answer boxes"
        assert _badges(page) == 0, "the good ask clears the answer boxes' error badges"


def _trained_and_evaluated(runs: Path, site: str, tiny_model_dir: Path) -> Path:
    """Run ``p5``: the P5 page on the tiny model, trained a little and evaluated on the full set (short answers)."""
    import subprocess
    import sys

    from kinject.corpus.prepare import prepare
    from kinject.settings.sources import FetchConfig, InputsConfig
    from kinject.settings.stages import BlocksConfig, ModelConfig, PrepareConfig

    config = PrepareConfig(
        inputs=InputsConfig(urls=[f"{site}/ec2-p5.html"]),
        model=ModelConfig(model=str(tiny_model_dir)),
        blocks=BlocksConfig(block_size=64),
        fetch=FetchConfig(allow_private_urls=True),
    )
    run = prepare(config, runs / "p5").run_dir
    kinject = [sys.executable, "-m", "kinject"]
    train = ["train", str(run), "--preset", "cpu-demo", "--epochs", "1", "--quantization", "none"]
    subprocess.run([*kinject, *train, "--eval-at-end", "false"], check=True, capture_output=True)
    evaluate = ["eval", str(run), "--quick", "off", "--max-new-tokens", "4", "--kl-max-new-tokens", "4"]
    subprocess.run([*kinject, *evaluate], check=True, capture_output=True)
    return run


def test_evaluate_stops_from_its_own_tab_keeps_the_full_one_and_locks_the_forms(
    app_url, tmp_path, site, tiny_model_dir
):
    """The Evaluate tab's job in the browser: Stop is live for an evaluation started from the Evaluate tab
    and says so at once; a stopped (full or quick) evaluation never replaces the complete full one; the forms lock
    while the job runs; a copied run shows its own name. Evaluate starts on the quick set on a CPU and says what
    the full set takes."""
    from playwright.sync_api import expect

    from kinject.runs import RunDir

    run = _trained_and_evaluated(tmp_path / "runs", site, tiny_model_dir)
    full = RunDir(run).read_eval("full")
    assert full is not None and not full["settings"]["quick"]
    shutil.copytree(run, tmp_path / "runs" / "copy-of-p5")

    with browser_page(app_url) as page:
        stop = page.get_by_role("button", name="Stop", exact=True)
        status = page.locator("#job-status")
        run_pick = page.get_by_role("combobox", name="Run", exact=True)

        # A copied run names itself in the status area, not the folder it was copied from.
        run_pick.click()
        page.get_by_role("option", name="copy-of-p5").click()
        expect(status).to_contain_text("training of copy-of-p5", timeout=30_000)
        expect(status).not_to_contain_text("training of p5")

        run_pick.click()
        page.get_by_role("option", name="p5", exact=True).click()
        expect(status).to_contain_text("training of p5", timeout=30_000)
        page.get_by_role("tab", name="Evaluate").click()
        quick = page.get_by_role("combobox", name="Quick", exact=True)
        expect(quick).to_have_value("auto")
        plan = page.locator("#eval-plan")
        expect(plan).to_contain_text("Evaluate runs the quick set", timeout=30_000)
        expect(plan).to_contain_text("this run's last full evaluation took")

        # The full set with long answers, one at a time: started here, stopped from here.
        quick.click()
        page.get_by_role("option", name="off", exact=True).click()
        expect(plan).to_contain_text("Evaluate runs the full set", timeout=30_000)
        tokens = page.get_by_role("spinbutton", name=re.compile(r"^Max new tokens\b")).first
        tokens.fill("1000")  # the tiny model never ends a turn: at 200 tokens an idle machine ended the set in 17 s
        page.locator("#eval-answers").scroll_into_view_if_needed()
        page.get_by_role("button", name="Evaluate", exact=True).click()
        expect(stop).to_be_enabled(timeout=30_000)
        expect(tokens).to_be_disabled(timeout=10_000)  # the forms lock while the job runs
        expect(quick).to_be_disabled()
        expect(page.get_by_role("button", name="Evaluate", exact=True)).to_be_disabled()
        expect(status).to_contain_text(re.compile(r"evaluate, [1-9]\d*/\d+ answers"), timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "evaluate-running.png"))
        stop.click()
        expect(status).to_contain_text("Stopping", timeout=5_000)  # at once, not at the next check
        expect(stop).to_be_disabled(timeout=5_000)
        expect(page.get_by_text("The complete full evaluation is kept")).to_be_visible(timeout=120_000)
        expect(tokens).to_be_enabled(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "evaluate-stopped.png"), full_page=True)
        assert RunDir(run).read_eval("stopped") is not None
        assert RunDir(run).read_eval("full") == full, "a stopped evaluation left the full one as it was"

        # A quick evaluation, stopped as soon as Stop is live (or done first): the full one is still intact.
        quick.click()
        page.get_by_role("option", name="on", exact=True).click()
        page.get_by_role("button", name="Evaluate", exact=True).click()
        expect(stop).to_be_enabled(timeout=30_000)
        stop.click()
        expect(page.get_by_role("button", name="Evaluate", exact=True)).to_be_enabled(timeout=120_000)
        assert RunDir(run).read_eval("full") == full, "a quick evaluation left the full one as it was"

        # The Runs table shows the full one (no "(quick)" or "(stopped)" beside p5's scores).
        page.get_by_role("tab", name="Runs").click()
        page.get_by_role("button", name="Refresh").click()
        table = page.locator("#runs-table")
        expect(table).to_contain_text("copy-of-p5", timeout=30_000)
        expect(table).not_to_contain_text("(stopped)")
        expect(table).not_to_contain_text("(quick)")
        table.scroll_into_view_if_needed()
        last = table.get_by_text("done", exact=True).first.bounding_box()  # the status column, the last one
        shown = table.bounding_box()
        assert last["x"] + last["width"] <= shown["x"] + shown["width"] + 1, "the table's last column is cut off"
        page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)
