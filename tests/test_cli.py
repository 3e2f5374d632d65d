"""The CLI: options generated from the config dataclasses, `--config` files, equivalent commands, and `prepare`
end to end over loopback (a per-source table, exit codes, nothing lost, nothing overwritten)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from httpserver import SiteServer

from kinject.cli.docs import cli_page
from kinject.cli.main import EXIT_ERROR, EXIT_NO_SOURCE, EXIT_OK, main, verb_configs
from kinject.cli.parser import build_parser
from kinject.runs import RunDir
from kinject.settings.commands import prepare_command, train_command
from kinject.settings.fields import describe_fields
from kinject.settings.presets import PRESETS
from kinject.settings.resolve import VERB_SECTIONS
from kinject.settings.sources import FetchConfig, InputsConfig
from kinject.settings.stages import BlocksConfig, ConfigError, EvalConfig, PrepareConfig
from kinject.settings.training import TrainConfig

CLI_PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
TEXT = "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs with 3,200 Gbps of networking.\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A folder that reads as a run (what the train, eval and ask verbs need to parse their options)."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"model": {"model": "smollm2-135m-instruct"}, "blocks": {"block_size": 512}})
    return run.path


def configs_of(argv: list[str]) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    return verb_configs(args.verb, args)


# --------------------------------------------------------------------------------------- generated options

# A valid value other than the default, per field (the rest follow from the field's kind).
SPECIAL = {
    "format": "gguf",  # export's only format so far: the option still lands
    "types": ["f16", "q8_0"],
    "allowed_networks": ["10.1.2.0/24", "192.168.0.0/16"],
    "urls": ["https://example.com/a", "https://example.com/b"],
    "files": ["notes.md", "paper.pdf"],
    "max_redirects": 7,
    "top_p": 0.5,
    "temperature": 0.7,
    "learning_rate": 0.003,
    "lora_dropout": 0.2,
    "warmup_ratio": 0.25,
    "epochs": 2.5,
    "replay_share": 0.3,
    "adapters": ["p5=runs/p5", "other=runs/other"],
    "merged": ["p5-merged=runs/p5/merged"],
    "endpoint": "http://10.0.0.5:8080",
    "generator": "http://127.0.0.1:8080",
    "repo": "someone/p5-adapter",
}


def other_value(info) -> Any:
    if info.kind == "bool":  # before SPECIAL: a name can be a flag in one section and a list in another (merged)
        return not info.default
    if info.name in SPECIAL:
        return SPECIAL[info.name]
    if info.kind == "choice":
        return next(c for c in info.choices if c != info.default)
    if info.kind == "int":
        return (info.default or 1) + 3
    if info.kind == "float":
        return (info.default or 1.0) * 1.5 + 0.5
    if info.kind == "list":
        return ["x", "y"]
    return f"value-of-{info.name}"


def option_argv(info, value: Any) -> list[str]:
    if info.kind == "bool":
        return [info.option] if value else [f"--no-{info.name.replace('_', '-')}"]
    if info.kind == "list":
        return [info.option, *value]
    return [info.option, str(value)]


def verb_argv(verb: str, run: Path) -> list[str]:
    return {
        "prepare": ["prepare", "--out", "x", "--url", "https://example.com/"],
        "model": ["model"],
        "serve": ["serve"],
        "chat": ["chat", "Hello?"],
        "ask": ["ask", str(run), "Q?"],
    }.get(verb, [verb, str(run)])


CASES = [
    (verb, section, info)
    for verb, sections in VERB_SECTIONS.items()
    for section, cls in sections.items()
    for info in describe_fields(cls)
]


@pytest.mark.parametrize(("verb", "section", "info"), CASES, ids=[f"{v}-{s}-{i.name}" for v, s, i in CASES])
def test_every_field_is_an_option_that_lands_in_its_config(verb, section, info, run_folder):
    value = other_value(info)
    configs = configs_of([*verb_argv(verb, run_folder), *option_argv(info, value)])
    got = getattr(configs[section], info.name)
    if info.name == "urls" and verb == "prepare":
        value = ["https://example.com/", *value]  # verb_argv gives one already
    assert got == value


def test_every_option_has_its_field_help_and_default(run_folder):
    wide = {**os.environ, "COLUMNS": "400"}  # no wrapping inside a help text ("comma-" / "separated")
    text = subprocess.run(
        [sys.executable, "-m", "kinject", "train", "--help"], capture_output=True, text=True, check=True, env=wide
    ).stdout
    flat = " ".join(text.split())
    for info in describe_fields(TrainConfig):
        assert info.option in text, info.name
        assert " ".join(info.help.split()) in flat, info.name
    assert "(default: 0.1)" in flat and "(default: the preset's)" in flat and "cpu-demo" in flat


def test_each_verb_has_its_sections_options_and_no_others():
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for verb, sections in VERB_SECTIONS.items():
        dests = {a.dest for a in sub.choices[verb]._actions}
        fields = {i.name for cls in sections.values() for i in describe_fields(cls)}
        assert fields <= dests, verb
        others = {i.name for cls in (TrainConfig, FetchConfig, EvalConfig) for i in describe_fields(cls)} - fields
        assert not (others & dests), (verb, others & dests)


def test_short_aliases_and_repeated_lists(run_folder):
    configs = configs_of(["train", str(run_folder), "--lr", "0.004", "--rank", "8", "--alpha", "4", "--eval"])
    t = configs["train"]
    assert (t.learning_rate, t.lora_r, t.lora_alpha, t.eval_at_end) == (0.004, 8, 4, True)
    inputs = configs_of(["prepare", "--out", "x", "--url", "http://a/", "--url", "http://b/", "--urls", "http://c/"])
    assert inputs["inputs"].urls == ["http://a/", "http://b/", "http://c/"]


def test_invalid_value_names_the_field(run_folder):
    with pytest.raises(ConfigError, match="top_p: must be within"):
        configs_of(["eval", str(run_folder), "--top-p", "2"])


# ---------------------------------------------------------------------------------------------- --config files


def test_config_file_loads_sections_and_options_override(tmp_path, run_folder):
    path = tmp_path / "c.yaml"
    sections = {"train": {"learning_rate": 0.0005, "seed": 7}, "blocks": {"block_size": 128}}
    path.write_text(yaml.safe_dump(sections))
    configs = configs_of(["train", str(run_folder), "--config", str(path), "--seed", "9"])
    assert configs["train"].learning_rate == 0.0005 and configs["train"].seed == 9
    assert configs["blocks"].block_size == 128


def test_a_run_config_yaml_is_a_config_file(tiny_run):
    """A run's own config.yaml reproduces its settings in another verb call."""
    path = RunDir(tiny_run).config_path
    configs = configs_of(["prepare", "--out", "elsewhere", "--config", str(path)])
    assert configs["blocks"].block_size == 64
    assert configs["inputs"].files == RunDir(tiny_run).section("inputs")["files"]


def test_an_explicit_preset_replaces_the_files_preset_values(tmp_path, run_folder):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"preset": "knowledge", "epochs": 15, "seed": 3}}))
    configs = configs_of(["train", str(run_folder), "--config", str(path), "--preset", "case-study"])
    assert configs["train"].epochs == PRESETS["case-study"]["train"]["epochs"] and configs["train"].seed == 3
    assert configs["blocks"].block_size == 2048


def test_unknown_key_in_config_file_is_named(tmp_path, run_folder, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learnin_rate: 0.1\n")
    assert main(["train", str(run_folder), "--config", str(path)]) == 1
    assert "train: unknown field(s) learnin_rate" in capsys.readouterr().err


def test_resume_refuses_new_settings(run_folder, capsys):
    assert main(["train", str(run_folder), "--resume", "--lr", "0.1"]) == 1
    assert "--resume continues the run's saved configuration; leave out learning_rate" in capsys.readouterr().err


def test_training_blocks_come_from_the_run_then_the_preset_then_options(run_folder):
    RunDir(run_folder).update_config(blocks={"block_size": 300, "text_format": "raw", "pad_last": True})
    configs = configs_of(["train", str(run_folder), "--preset", "case-study"])
    assert (configs["blocks"].block_size, configs["blocks"].pad_last) == (2048, True)
    configs = configs_of(["train", str(run_folder), "--block-size", "100"])
    assert configs["blocks"].block_size == 100


# ------------------------------------------------------------------------------------- equivalent commands


def test_prepare_command_round_trips():
    config = PrepareConfig(
        inputs=InputsConfig(urls=["https://example.com/a?x=1&y=$(rm -rf /)", "https://example.com/b;ls"]),
        fetch=FetchConfig(timeout_s=5, allowed_networks=["10.0.0.0/8"]),
        blocks=BlocksConfig(block_size=256, text_format="both"),
    )
    command = prepare_command(config, "runs/my run", force=True)
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "kinject", "prepare"]
    args = build_parser().parse_args(argv[3:])
    assert PrepareConfig(**verb_configs("prepare", args)) == config
    assert args.out == "runs/my run" and args.force
    assert "--max-bytes" not in command  # only what differs from the defaults


def test_train_command_round_trips(run_folder):
    config = TrainConfig(preset="cpu-demo", learning_rate=5e-3, lora_r=4, eval_at_end=True, lr_scheduler="cosine")
    blocks = BlocksConfig(block_size=64, text_format="chat")
    evaluation = EvalConfig(auto_probes=3)
    command = train_command(run_folder, config, blocks, evaluation=evaluation)
    configs = configs_of(shlex.split(command)[3:])
    assert configs["train"] == config and configs["blocks"] == blocks and configs["eval"] == evaluation
    assert "--preset cpu-demo" in command and "--epochs" not in command  # the preset's epochs need no option
    assert shlex.split(train_command(run_folder, config, resume=True))[5:] == ["--resume", "--eval-at-end"]


def test_a_preset_setting_turned_off_round_trips(run_folder):
    """The knowledge preset trains question-answer pairs; the command that turns them off for the user's own
    questions alone must parse (a field whose default is false has no --no- form)."""
    config = TrainConfig()
    blocks = BlocksConfig(block_size=512, text_format="none", use_qa=False, replay_share=0.4, balance_facts=False)
    command = train_command(run_folder, config, blocks)
    assert "--use-qa false" in command and "--no-balance-facts" in command
    assert configs_of(shlex.split(command)[3:])["blocks"] == blocks


def test_the_docs_cli_reference_is_generated_from_the_configs():
    assert CLI_PAGE.read_text(encoding="utf-8") == cli_page(), "docs/cli.md is stale: run `make docs`"


# ------------------------------------------------------------------------------------------- prepare end to end


@pytest.fixture(scope="module")
def mixed_batch(site, tmp_path_factory) -> dict[str, Any]:
    """One `prepare` of good pages, every kind of failure, a URL file and a local file."""
    tmp = tmp_path_factory.mktemp("mixed")
    out = tmp / "run"
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
    (tmp / "urls.txt").write_text("# the sample pages\n" + f"{site}/vector-stores.html\n")
    note = tmp / "note.md"
    note.write_text("# Notes\n\nThe llamas of Lima prefer rain, says the 2026 llama census of Peru.\n")
    args = ["prepare", "--out", str(out), "--allow-private-urls", "--timeout-s", "1", "--block-size", "256"]
    args += [a for u in urls for a in ("--url", u)] + ["--urls-file", str(tmp / "urls.txt"), "--file", str(note)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = main(args)
    run = RunDir(out)
    return {"code": code, "run": run, "rows": run.read_sources(), "printed": printed.getvalue(), "site": site}


def test_prepare_batch_succeeds_with_the_good_sources(mixed_batch):
    site = mixed_batch["site"]
    assert mixed_batch["code"] == EXIT_OK
    ok = [r for r in mixed_batch["rows"] if r["status"] == "ok"]
    assert {r["input"] for r in ok} == {
        f"{site}/ec2-p5.html",
        f"{site}/bedrock-agents.html",
        f"{site}/vector-stores.html",
        next(r["input"] for r in mixed_batch["rows"] if r["input"].endswith("note.md")),
    }
    assert all(r["tokens"] and r["chars"] and len(r["sha256"]) == 64 for r in ok)


def test_prepare_batch_reports_each_failure_specifically(mixed_batch):
    site, rows = mixed_batch["site"], mixed_batch["rows"]
    assert len(rows) == 12
    errors = {r["input"]: r["error"] for r in rows if r["status"] == "error"}
    assert "404" in errors[f"{site}/404"] and "500" in errors[f"{site}/500"]
    assert "content type" in errors[f"{site}/binary"]
    assert "no text" in errors[f"{site}/empty"]
    assert "timeout" in errors[f"{site}/slow"]
    assert "refused" in next(e for i, e in errors.items() if i.startswith("http://127.0.0.1:") and "/x" in i)
    assert errors["http//malformed"]
    assert [r["status"] for r in rows if r["input"] == f"{site}/ec2-p5.html"] == ["ok", "duplicate"]


def test_prepare_batch_writes_corpus_blocks_and_config(mixed_batch):
    run = mixed_batch["run"]
    ok = [r for r in mixed_batch["rows"] if r["status"] == "ok"]
    assert len(run.load_corpus()) == len(ok)
    (packing,) = run.blocks_infos()
    stats = packing["stats"]
    assert stats["block_size"] == 256 and stats["corpus_tokens"] == stats["tokens_kept"]
    assert stats["corpus_tokens"] >= sum(r["tokens"] for r in ok)
    config = run.read_config()
    assert config["fetch"]["allow_private_urls"] is True and config["fetch"]["timeout_s"] == 1
    assert len(config["inputs"]["urls"]) == 11 and config["blocks"]["block_size"] == 256


def test_prepare_batch_prints_the_table_and_totals(mixed_batch):
    assert "HTTP 404" in mixed_batch["printed"] and "4/12 sources used" in mixed_batch["printed"]


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
    before = RunDir(out).read_sources()
    assert main([*base, "--url", f"{site}/bedrock-agents.html"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert RunDir(out).read_sources() == before


def test_force_replaces_a_run_only_once_the_new_one_is_complete(site, tmp_path):
    out = tmp_path / "run"
    base = ["prepare", "--out", str(out), "--allow-private-urls"]
    assert main([*base, "--url", f"{site}/ec2-p5.html"]) == EXIT_OK
    before = RunDir(out).read_sources()
    assert main([*base, "--force", "--url", f"{site}/404"]) == EXIT_NO_SOURCE  # only failing sources
    assert RunDir(out).read_sources() == before
    assert main([*base, "--force", "--url", f"{site}/bedrock-agents.html"]) == EXIT_OK
    assert "bedrock-agents" in RunDir(out).read_sources()[0]["input"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.mark.parametrize("verb", [None, "model", "prepare", "train", "merge", "ask", "eval"])
def test_help_runs_for_every_verb(verb):
    cmd = [sys.executable, "-m", "kinject"] + ([verb] if verb else []) + ["--help"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert text.startswith("usage: kinject")
    if verb == "prepare":
        for flag in ("--url", "--urls-file", "--file", "--model", "--out", "--block-size", "--allow-private-urls"):
            assert flag in text
    if verb == "train":
        for flag in ("--preset", "--epochs", "--max-steps", "--learning-rate", "--lr", "--rank", "--batch-size"):
            assert flag in text
        assert "--quantization" in text and "--resume" in text and "--config" in text


def test_prepare_names_the_entry_that_is_no_url(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["prepare", "--out", str(out), "--urls", "hello world", "example.com/page"]) == EXIT_NO_SOURCE
    err = capsys.readouterr().err
    assert "hello world: error: URL 'hello world' must start with http:// or https://" in err
    assert "example.com/page: error: URL 'example.com/page' must start with http:// or https://" in err
    assert "white space" not in err and not out.exists()


def test_prepare_without_inputs_says_so_in_words(tmp_path, capsys):
    assert main(["prepare", "--out", str(tmp_path / "run")]) != EXIT_OK
    assert capsys.readouterr().err.strip() == "error: nothing to prepare: give at least one URL or file"
    with pytest.raises(ConfigError, match="^nothing to prepare: give at least one URL or file$"):
        PrepareConfig()


def test_prepare_force_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("three years of work")
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    assert main(["prepare", "--out", str(thesis), "--force", "--file", str(doc)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"{thesis} is not a kinject run" in err and "Traceback" not in err
    assert sorted(p.name for p in thesis.iterdir()) == ["thesis.txt"]


@pytest.mark.parametrize("out", ["", ".", "..", "  ", "runs/.."])
def test_an_empty_or_dot_out_is_refused_before_anything_is_written(out, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    doc = work / "doc.txt"
    doc.write_text(TEXT)
    monkeypatch.chdir(work)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for force in ([], ["--force"]):
        assert main(["prepare", "--out", out, *force, "--file", str(doc)]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert "is not a folder to create" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_an_out_that_cannot_be_written_is_refused_before_fetching(site, site_server: SiteServer, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # fails for root too, unlike a read-only mode
    before = len(site_server.requests)
    code = main(["prepare", "--out", str(blocker / "run"), "--allow-private-urls", "--url", f"{site}/ec2-p5.html"])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot create {blocker / 'run'}: {blocker} is a file, not a folder"
    assert len(site_server.requests) == before


def test_os_errors_become_one_message_and_an_exit_code(tmp_path, monkeypatch, capsys):
    import kinject.corpus.prepare

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "corpus"))

    monkeypatch.setattr(kinject.corpus.prepare, "prepare", full)
    assert main(["prepare", "--out", str(tmp_path / "run"), "--url", "https://example.com/"]) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == (
        f"error: disk full ({tmp_path / 'run' / 'corpus'}): free some space and run the command again"
    )


def test_a_bad_endpoint_variable_is_a_message(monkeypatch, capsys):
    monkeypatch.setenv("KINJECT_ENDPOINT", "localhost:8080")
    assert main(["chat", "Hi?"]) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == "error: endpoint: must be an http(s) URL, got 'localhost:8080'"


def test_ask_and_eval_check_the_adapter_before_loading_the_model(tiny_run, monkeypatch, capsys):
    import kinject.models.generate

    monkeypatch.setattr(kinject.models.generate, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["ask", str(tiny_run), "What GPUs?"]) == EXIT_ERROR
    assert "has no trained adapter yet: train it first" in capsys.readouterr().err
    run = RunDir(tiny_run)
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))  # weights missing
    assert main(["eval", str(tiny_run), "--auto-probes", "1", "--no-retention", "--no-forgetting"]) == EXIT_ERROR
    assert "has no weights" in capsys.readouterr().err
    assert main(["ask", str(tiny_run), "What GPUs?"]) == EXIT_ERROR
    assert "has no weights" in capsys.readouterr().err
