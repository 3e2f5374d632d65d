"""The app in a real browser: Playwright drives Debian's chromium through Prepare, Train and Chat (compare mode) on
a loopback page and the tiny model, saving a screenshot of each step under tests/artifacts/ (ignored by git).

Skipped, with the reason, only where chromium or Playwright is missing (the Makefile's test setup installs both
where it can)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"


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
def app_url(tmp_path, monkeypatch):
    import app

    monkeypatch.setattr(app, "RUNS_ROOT", tmp_path / "runs")
    demo = app.build_ui()
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()
        app.CHAT.stop()


def test_prepare_train_and_chat_in_compare_mode(app_url, site, tiny_model_dir):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(app_url)
            # Prepare: one loopback page, the tiny model, small blocks.
            page.get_by_role("textbox", name="URLs").fill(f"{site}/ec2-p5.html")
            page.get_by_role("textbox", name=re.compile(r"^Model\b")).first.fill(str(tiny_model_dir))
            page.get_by_role("spinbutton", name="Block size").first.fill("64")
            page.get_by_role("checkbox", name="Allow private urls").check()
            page.get_by_role("textbox", name="Run name").fill("p5")
            page.get_by_role("button", name="Prepare", exact=True).click()
            expect(page.get_by_text("sources used")).to_be_visible(timeout=120_000)
            page.screenshot(path=str(ARTIFACTS / "1-prepare.png"))

            # Train: the cpu-demo preset (raw text, no augmentation), a few steps.
            page.get_by_role("tab", name="Train").click()
            page.get_by_role("combobox", name="Preset", exact=True).click()
            page.get_by_role("option", name="cpu-demo").click()
            page.get_by_role("spinbutton", name=re.compile(r"^Epochs\b")).first.fill("2")
            page.get_by_role("combobox", name="Quantization", exact=True).click()
            page.get_by_role("option", name="none").click()
            page.get_by_role("checkbox", name="Eval at end").uncheck()
            page.get_by_role("button", name="Start", exact=True).click()
            expect(page.get_by_text("done", exact=False).first).to_be_visible(timeout=300_000)
            page.screenshot(path=str(ARTIFACTS / "2-train.png"))

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
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()
