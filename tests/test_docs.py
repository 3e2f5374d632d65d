"""The documentation a user reads: a short README that is also the Space's card (its port the Dockerfile's), a docs
site whose nav holds every page, and no ticket numbers anywhere a reader meets them. (The strict mkdocs build, which
fails on a broken link or anchor, is `make docs-check`, part of `make test`; docs/cli.md is checked in test_cli.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


SPACE_COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def front_matter(text: str) -> dict:
    assert text.startswith("---\n"), "the README must open with the Space's YAML front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_readme_is_short_and_is_the_space_card():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    card = front_matter(text)
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "app_port", "pinned"):
        assert key in card, key
    assert card["sdk"] == "docker" and card["pinned"] is False
    assert {card["colorFrom"], card["colorTo"]} <= SPACE_COLOURS
    assert len(card.get("short_description", "")) <= 60
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^EXPOSE {card['app_port']}$", dockerfile, re.M), "app_port must be the port the image exposes"
    assert re.search(rf"KINJECT_PORT={card['app_port']}\b", dockerfile), "app_port must be the port the app listens on"
    assert "make run" in text and "make test" in text and "docs/app-training.png" in text


def test_the_deploy_page_shows_the_readme_card():
    card = README.read_text(encoding="utf-8").split("---\n", 2)[1]
    shown = (DOCS / "deploy.md").read_text(encoding="utf-8").split("```yaml\n---\n", 1)[1].split("---\n```", 1)[0]
    assert yaml.safe_load(shown) == {k: v for k, v in yaml.safe_load(card).items() if k != "short_description"}


def test_the_readme_links_to_files_that_exist():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (ROOT / target).is_file(), target


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return [p for item in node for p in pages(item)]

    listed = pages(config["nav"])
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md")), "mkdocs.yml's nav and docs/ differ"
    assert config["docs_dir"] == "docs" and config["theme"]["name"] == "material"


TICKET = re.compile(r"\bissues? #?\d+|(?<![\w&/])#\d+\b(?!-)", re.I)  # not an anchor (#2026-12-03-...)


def test_no_ticket_numbers_where_readers_meet_them():
    """A ticket's number (the word issue and a number, or a hash and a number) points at a tracker no reader of the
    repository has: say what changed and why instead."""
    files = subprocess.run(
        ["git", "ls-files", "README.md", "docs", "kinject", "tests", "bench", "Makefile", "mkdocs.yml", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix not in {".md", ".py", ".sh", ".yml", ".yaml", ".toml", ""} or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if TICKET.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
