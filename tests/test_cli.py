"""`kinject prepare` end to end over loopback: a per-source table, exit codes, nothing lost, nothing overwritten."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import yaml

from kinject.cli import EXIT_NO_SOURCE, EXIT_OK, main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prepare_mixed_batch(site, tmp_path, capsys):
    out = tmp_path / "run"
    urls = [
        f"{site}/ec2-p5.html",
        f"{site}/bedrock-agents.html",
        f"{site}/404",
        f"{site}/500",
        f"{site}/binary",
        f"{site}/empty",
        f"{site}/slow",
        f"http://127.0.0.1:{_closed_port()}/x",
        "http//malformed",
        f"{site}/ec2-p5.html",
    ]
    (tmp_path / "urls.txt").write_text("# the sample pages\n" + f"{site}/vector-stores.html\n")
    note = tmp_path / "note.md"
    note.write_text("# Notes\n\nThe llamas of Lima prefer rain, says the 2026 llama census of Peru.\n")
    args = ["prepare", "--out", str(out), "--allow-private-urls", "--timeout", "1", "--block-size", "256"]
    args += [a for u in urls for a in ("--url", u)] + ["--urls-file", str(tmp_path / "urls.txt"), "--file", str(note)]
    assert main(args) == EXIT_OK
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "sources.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    by_input = {}
    for r in rows:
        by_input.setdefault(r["input"], []).append(r)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["input"] for r in ok} == {
        f"{site}/ec2-p5.html",
        f"{site}/bedrock-agents.html",
        f"{site}/vector-stores.html",
        str(note),
    }
    assert all(r["tokens"] > 0 and r["chars"] > 0 and len(r["sha256"]) == 64 for r in ok)
    errors = {r["input"]: r["error"] for r in rows if r["status"] != "ok"}
    assert "404" in errors[f"{site}/404"] and "500" in errors[f"{site}/500"]
    assert "content type" in errors[f"{site}/binary"]
    assert "no text" in errors[f"{site}/empty"]
    assert "timeout" in errors[f"{site}/slow"]
    assert "refused" in next(e for i, e in errors.items() if i.startswith("http://127.0.0.1:") and "/x" in i)
    assert errors["http//malformed"]
    assert by_input[f"{site}/ec2-p5.html"][1]["status"] == "duplicate"
    for name in ("config.yaml", "sources.jsonl", "corpus", "blocks", "blocks.json"):
        assert (out / name).exists(), name
    stats = json.loads((out / "blocks.json").read_text())
    assert stats["block_size"] == 256 and stats["corpus_tokens"] == stats["tokens_kept"]
    assert stats["corpus_tokens"] >= sum(r["tokens"] for r in ok)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["fetch"]["allow_private_urls"] is True and len(config["inputs"]["urls"]) == 11
    assert "HTTP 404" in printed and "4/12 sources used" in printed


def test_prepare_no_usable_source(site, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["prepare", "--out", str(out), "--allow-private-urls", "--url", f"{site}/404", "--url", "ftp://x/y"])
    assert code == EXIT_NO_SOURCE
    err = capsys.readouterr().err
    assert "no usable source" in err and "HTTP 404" in err and "ftp" in err
    assert not out.exists()


def test_prepare_refuses_loopback_by_default(site, tmp_path, capsys):
    assert main(["prepare", "--out", str(tmp_path / "r"), "--url", f"{site}/ec2-p5.html"]) == EXIT_NO_SOURCE
    assert "refused" in capsys.readouterr().err


def test_existing_run_not_overwritten_without_force(site, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["prepare", "--out", str(out), "--allow-private-urls"]
    assert main([*base, "--url", f"{site}/ec2-p5.html"]) == EXIT_OK
    before = (out / "sources.jsonl").read_text()
    assert main([*base, "--url", f"{site}/bedrock-agents.html"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "sources.jsonl").read_text() == before
    # --force with only failing sources keeps the earlier run intact
    assert main([*base, "--force", "--url", f"{site}/404"]) == EXIT_NO_SOURCE
    assert (out / "sources.jsonl").read_text() == before
    assert main([*base, "--force", "--url", f"{site}/bedrock-agents.html"]) == EXIT_OK
    assert "bedrock-agents" in (out / "sources.jsonl").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.mark.parametrize("verb", [None, "model", "prepare", "train", "merge", "ask", "eval"])
def test_help_is_complete(verb):
    cmd = [sys.executable, "-m", "kinject"] + ([verb] if verb else []) + ["--help"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "usage: kinject" in text
    if verb == "prepare":
        for flag in ("--url", "--urls-file", "--file", "--model", "--out", "--block-size", "--allow-private-urls"):
            assert flag in text
    if verb == "train":
        for flag in ("--preset", "--epochs", "--max-steps", "--lr", "--rank", "--alpha", "--batch-size"):
            assert flag in text
        assert "--quantization" in text and "--resume" in text and "cpu-demo" in text
