"""Fixes of probe findings: --force replaces only a run, push uploads no links and no stale merged model, merge
holds the run's lock, a damaged adapter or config.yaml is named, a Hub without Xet leaves no empty repository,
and each unclear message names what is wrong (field, file, folder, encoding)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hubserver import User, hub_server

from kinject.cli.main import EXIT_ERROR, main
from kinject.runs import RunBusyError, RunDir, RunError
from kinject.settings.fields import from_dict
from kinject.settings.services import PublishConfig
from kinject.settings.sources import FetchConfig
from kinject.settings.stages import AugmentConfig, ConfigError, TrainConfig
from kinject.sharing.publish import PublishError, push
from kinject.sources.extract import decode_bytes
from kinject.sources.fetch import fetch_sources

ALICE = "hf_aliceWriteToken0123456789abcdefXYZ"
TEXT = "The llamas of Lima prefer rain, says the 2026 census of Peru. Each llama drinks four litres a day.\n"


def fake_run(path: Path, model: str = "x/base") -> RunDir:
    """A run folder with a (random, tiny) adapter on disk: enough for the checks that need no model."""
    import torch
    from safetensors.torch import save_file

    run = RunDir(path)
    run.path.mkdir(parents=True)
    run.write_config({"model": {"model": model}})
    run.adapter_dir.mkdir()
    (run.adapter_dir / RunDir.ADAPTER_CONFIG).write_text(json.dumps({"peft_type": "LORA"}))
    save_file({"a": torch.zeros(4)}, str(run.adapter_weights()))
    return run


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    with hub_server({ALICE: User("alice")}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr("kinject.sharing.publish._saved_token", lambda: "")
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)  # the loopback Hub speaks LFS (see below)
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield server


# ------------------------------------------------------------------------------ 1. --force replaces only a run


def test_force_replaces_only_a_kinject_run_or_an_empty_folder(tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("three years of work")
    with pytest.raises(RunError, match=r"thesis is not a kinject run.*nothing was deleted"):
        RunDir.check_new(thesis, force=True)
    with pytest.raises(RunError, match="not a kinject run"), RunDir.create(thesis, force=True) as new:
        new.write_config({"model": {"model": "m"}})
    assert (thesis / "thesis.txt").read_text() == "three years of work"
    # A folder with a config.yaml of something else is no run either.
    (thesis / "config.yaml").write_text("title: my thesis\n")
    with pytest.raises(RunError, match="not a kinject run"):
        RunDir.check_new(thesis, force=True)
    # An empty folder and a run are replaced.
    for name, content in (("empty", None), ("run", {"model": {"model": "m"}, "train": {"seed": 1}})):
        target = tmp_path / name
        target.mkdir()
        if content:
            RunDir(target).write_config(content)
        with RunDir.create(target, force=True) as new:
            new.write_config({"model": {"model": "new"}})
        assert RunDir(target).read_config() == {"model": {"model": "new"}}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


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


# ------------------------------------------------------------------------------------- 6d. an empty --out


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


# ------------------------------------------------------------------------------------- 2. push and links


def test_push_refuses_links_and_files_from_outside_the_run(hub, tmp_path):
    run = fake_run(tmp_path / "run")
    os.symlink("/etc/passwd", run.adapter_dir / "notes.txt")
    with pytest.raises(PublishError, match=r"links.*notes\.txt -> /etc/passwd.*nothing was uploaded"):
        push(run, PublishConfig(repo="alice/x"), token=ALICE)
    (run.adapter_dir / "notes.txt").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, run.adapter_dir / "more")  # a linked folder, whose files lie outside the run
    with pytest.raises(PublishError, match=r"more -> .*outside"):
        push(run, PublishConfig(repo="alice/x"), token=ALICE)
    (run.adapter_dir / "more").unlink()
    run.merged_dir.mkdir()
    (run.merged_dir / "config.json").write_text("{}")
    os.symlink("/etc/hostname", run.merged_dir / "tokenizer.json")
    with pytest.raises(PublishError, match=r"tokenizer\.json -> /etc/hostname"):
        push(run, PublishConfig(repo="alice/x", merged=True), token=ALICE)
    assert hub.requests == [] and hub.repos == {}  # refused before the Hub was asked anything


# ---------------------------------------------------------------------------- 3. merge: lock, stale merged/


def test_merge_holds_the_runs_lock(tmp_path, monkeypatch):
    import kinject.sharing.merge
    from kinject.sharing.merge import merge

    run = fake_run(tmp_path / "run")
    monkeypatch.setattr(kinject.sharing.merge, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with run.training_lock(), pytest.raises(RunBusyError, match="being trained"):
        merge(run)


def test_push_refuses_a_merged_model_of_an_older_adapter(hub, tmp_path, tiny_model_dir, capsys):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from kinject.sharing.merge import merge

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"model": {"model": str(tiny_model_dir)}})
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2, init_lora_weights=False)
    )
    model.save_pretrained(run.adapter_dir)
    merge(run)
    assert run.merged_is_current()
    assert push(run, PublishConfig(repo="alice/x", merged=True), token=ALICE).files
    # A new training replaces the adapter; merged/ stays, and now is stale.
    weights = load_file(str(run.adapter_weights()))
    save_file({k: v * 2 for k, v in weights.items()}, str(run.adapter_weights()))
    assert not run.merged_is_current()
    commits = hub.commit_count("alice/x")
    with pytest.raises(PublishError, match=r"merged was made from an older adapter; run `kinject merge .* again"):
        push(run, PublishConfig(repo="alice/x", merged=True), token=ALICE)
    assert main(["push", str(run.path), "--repo", "alice/x", "--merged"]) == EXIT_ERROR
    assert "older adapter" in capsys.readouterr().err
    assert hub.commit_count("alice/x") == commits
    # A merged/ that records no adapter (made by hand, or by an older kinject) is refused too.
    run.merge_record_path().unlink()
    with pytest.raises(PublishError, match="does not record which adapter"):
        push(run, PublishConfig(repo="alice/x", merged=True), token=ALICE)
    push(run, PublishConfig(repo="alice/x"), token=ALICE)  # the adapter alone still goes


# ------------------------------------------------------------------------------------- 4. a damaged adapter


@pytest.mark.parametrize("cut", ["empty", "header", "data"])
def test_a_truncated_or_empty_adapter_is_named_before_loading(cut, tmp_path, tiny_model_dir, capsys, monkeypatch):
    import kinject.serving.serve

    run = fake_run(tmp_path / "run", model=str(tiny_model_dir))
    data = run.adapter_weights().read_bytes()
    cut_at = {"empty": 0, "header": 20, "data": len(data) - 3}[cut]
    run.adapter_weights().write_bytes(data[:cut_at])
    with pytest.raises(RunError, match=r"adapter_model\.safetensors is damaged \(truncated or empty\)"):
        run.require_adapter()
    monkeypatch.setattr(kinject.serving.serve, "Engine", lambda *a, **k: pytest.fail("the model was loaded"))
    for argv in (["ask", str(run.path), "Hi?"], ["merge", str(run.path)]):
        assert main(argv) == EXIT_ERROR
        err = capsys.readouterr().err
        assert "is damaged (truncated or empty): retrain or resume the run" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------- 5. a Hub without Xet


def test_a_hub_without_xet_refuses_in_one_line_and_leaves_no_empty_repository(hub, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hf_constants
    import torch
    from safetensors.torch import save_file

    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", False)  # hf_xet is installed: it is used
    run = fake_run(tmp_path / "run")
    with pytest.raises(PublishError, match=rf"the Hub at {hub.url} refused the upload: .*xet") as info:
        push(run, PublishConfig(repo="alice/x"), token=ALICE)
    assert "\n" not in str(info.value) and "HF_HUB_DISABLE_XET" in str(info.value)
    assert "alice/x" not in hub.repos  # the repository this push created is gone again
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert main(["push", str(run.path), "--repo", "alice/x"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "refused the upload" in err and "Traceback" not in err and "alice/x" not in hub.repos
    # A repository that existed before the push is left as it was.
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    push(run, PublishConfig(repo="alice/x"), token=ALICE)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", False)
    save_file({"a": torch.ones(4)}, str(run.adapter_weights()))  # new weights: an upload is needed
    with pytest.raises(PublishError, match="refused the upload"):
        push(run, PublishConfig(repo="alice/x"), token=ALICE)
    assert "alice/x" in hub.repos and hub.commit_count("alice/x") == 2


# ---------------------------------------------------------------------------------- 6. unclear messages


def test_resume_while_the_first_training_is_starting_says_so(tmp_path):
    from kinject.training.pipeline import train

    run = fake_run(tmp_path / "run")
    with run.training_lock(), pytest.raises(RunBusyError, match=r"being trained .*still be starting"):
        train(run, resume=True)


def test_a_value_of_the_wrong_type_names_the_field_and_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^train: lora_r must be an integer, got 'abc'$"):
        from_dict(TrainConfig, {"lora_r": "abc"}, "train")
    with pytest.raises(ConfigError, match=r"learning_rate must be a number, got 'fast'"):
        from_dict(TrainConfig, {"learning_rate": "fast"}, "train")
    with pytest.raises(ConfigError, match=r"eval_at_end must be true or false, got 'yes please'"):
        from_dict(TrainConfig, {"eval_at_end": "yes please"}, "train")
    assert from_dict(TrainConfig, {"lora_r": 8, "lora_dropout": 0, "max_steps": None}, "train").lora_r == 8
    run = fake_run(tmp_path / "run")
    run.write_config({"model": {"model": "m"}, "train": {"lora_r": "abc"}})
    with pytest.raises(ConfigError, match=rf"^{run.config_path}: train: lora_r must be an integer, got 'abc'$"):
        run.section("train")


def test_an_empty_config_yaml_is_called_empty_not_never_trained(tmp_path):
    from kinject.training.pipeline import train

    run = fake_run(tmp_path / "run")
    state = run.checkpoint_at(2) / "trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    run.config_path.write_text("")
    with pytest.raises(RunError, match=r"config\.yaml is empty or damaged"):
        train(run, resume=True)


def test_seeds_must_fit_the_generators():
    for make in (lambda s: TrainConfig(seed=s), lambda s: AugmentConfig(augment_seed=s)):
        make(0), make(2**32 - 1)
        for bad in (2**80, -1, 2**32):
            with pytest.raises(ConfigError, match=r"seed: must be within 0\.\.4294967295"):
                make(bad)


def test_a_pdf_that_holds_html_is_named_and_pypdf_stays_quiet(tmp_path, capsys, caplog):
    import io

    from pypdf import PdfWriter

    fake = tmp_path / "paper.pdf"
    fake.write_text("<!doctype html><html><body><p>Please log in to read this paper.</p></body></html>")
    writer, buffer = PdfWriter(), io.BytesIO()
    writer.add_blank_page(100, 100)
    writer.write(buffer)
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(buffer.getvalue()[:-30])  # no EOF marker
    caplog.set_level(logging.WARNING)
    rows = fetch_sources([], [str(fake), str(cut)], FetchConfig())
    assert rows[0].error == "not a PDF: it holds HTML (an error or login page in place of the document?)"
    assert rows[1].error.startswith("unreadable PDF")
    assert "EOF marker" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_decoded(encoding, tmp_path):
    plain = TEXT * 3  # ASCII: as UTF-8 it would decode, NULs and all
    accented = "Die Lamas von Lima mögen Regen, sagt die Volkszählung 2026 von Perú. 日本語も少し。\n" * 3
    for text in (plain, accented):
        assert decode_bytes(text.encode(encoding), html=False) == text
        doc = tmp_path / "notes.txt"
        doc.write_bytes(text.encode(encoding))
        (row,) = fetch_sources([], [str(doc)], FetchConfig())
        assert row.status == "ok" and "Lima" in row.text, row.error
    # Text that merely holds a few NULs is not taken for UTF-16.
    assert decode_bytes(b"plain ascii\x00 text with one nul", html=False) == "plain ascii\x00 text with one nul"
