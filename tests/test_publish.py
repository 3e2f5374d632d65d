"""Hub publishing against a loopback Hub (tests/hubserver.py, reached through HF_ENDPOINT): push, the model card,
the token kept out of every file and message, each failure's message, and Hub ids used as adapters."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
import yaml
from damaged_runs import fake_run
from hubserver import User, hub_server

from kinject.cli.main import EXIT_ERROR, main
from kinject.models.hub import parse_hub_id
from kinject.runs import RunDir
from kinject.runtime.progress import RecordingProgress
from kinject.settings.services import PublishConfig
from kinject.settings.sources import InputsConfig
from kinject.settings.stages import BlocksConfig, EvalConfig, GenerationConfig, ModelConfig, PrepareConfig
from kinject.settings.training import TrainConfig
from kinject.sharing.card import base_license
from kinject.sharing.publish import PublishError, push

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 6
PROBES = [
    {"id": "gpu", "kind": "knowledge", "question": "What GPUs do P5 instances have?",
     "prompt": "Amazon EC2 P5 instances are powered by", "answers": ["H100"]},
    {"id": "mem", "kind": "knowledge", "question": "How much memory does a P5 have?",
     "prompt": "Each p5.48xlarge instance has 8 GPUs and", "answers": ["2 TB"]},
]  # fmt: skip
ALICE = "hf_aliceWriteToken0123456789abcdefXYZ"
READER = "hf_ritaReadOnlyToken0123456789abcdefXY"
BOB = "hf_bobWriteToken0123456789abcdefXYZ012"
TOKENS = (ALICE, READER, BOB)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir) -> Path:
    """A tiny run with an adapter, its evaluation and its merged model."""
    from kinject.corpus.prepare import prepare
    from kinject.eval import evaluate
    from kinject.sharing.merge import merge
    from kinject.training.pipeline import train

    root = tmp_path_factory.mktemp("publish")
    doc = root / "p5.txt"
    doc.write_text(TEXT)
    probes = root / "probes.jsonl"
    probes.write_text("".join(json.dumps(p) + "\n" for p in PROBES))
    config = PrepareConfig(
        inputs=InputsConfig(files=[str(doc)]), model=ModelConfig(model=str(tiny_model_dir)), blocks=BlocksConfig(64)
    )
    run = prepare(config, root / "run").run_dir
    hot = TrainConfig(preset="cpu-demo", max_steps=6, learning_rate=5e-2, quantization="none", guard_checks=0)
    train(run, hot, blocks=BlocksConfig(block_size=64))
    evaluate(run, EvalConfig(probes=str(probes), retention=False, kl_max_new_tokens=4))
    merge(run)
    return run


@pytest.fixture
def run(trained, tmp_path) -> RunDir:
    """A fresh copy of the trained run per test, so a push's changes never leak into another test."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained, copy, symlinks=True)
    return RunDir(copy)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    users = {
        ALICE: User("alice", orgs={"team": "write", "readers": "read", "helpers": "contributor"}),
        READER: User("rita", role="read"),
    }
    users[BOB] = User("bob")
    with hub_server(users) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr("kinject.sharing.publish._saved_token", lambda: "")
        # The loopback Hub speaks git-LFS, not Xet's content-addressed store: huggingface_hub then uploads through
        # LFS, as it does wherever hf_xet is not installed.
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("KINJECT_HOME", str(tmp_path / "kinject-home"))
        yield server


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256 (of the content a symlink points to, as in the Hub's cache)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_no_token(*places: bytes | str) -> None:
    for place in places:
        data = place.encode() if isinstance(place, str) else place
        for token in TOKENS:
            assert token.encode() not in data, "a token leaked"


def folder_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# ------------------------------------------------------------------------------------------------------ push


def test_push_then_download_gives_the_runs_adapter_byte_for_byte(hub, run, tiny_model_dir, caplog, capsys):
    import torch
    from huggingface_hub import snapshot_download
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    caplog.set_level(logging.DEBUG)
    progress = RecordingProgress()
    result = push(run, PublishConfig(repo="alice/p5-facts"), token=ALICE, progress=progress)

    assert result.created and result.private and hub.repos["alice/p5-facts"].private
    assert result.url == f"{hub.url}/alice/p5-facts"
    assert "README.md" in result.files and "adapter_model.safetensors" in result.files
    assert hub.lfs, "the weights went through LFS"
    (title,) = [m for sha, m in hub.repos["alice/p5-facts"].messages.items() if sha != _initial(hub, "alice/p5-facts")]
    assert title.startswith("kinject: LoRA adapter from 1 sources")
    # The card is kept beside the adapter, and what the Hub holds is exactly the run's adapter/.
    card = (run.adapter_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft")
    local = tree(run.adapter_dir)
    downloaded = Path(snapshot_download("alice/p5-facts", endpoint=hub.url, token=ALICE))
    assert {k: v for k, v in tree(downloaded).items() if k != ".gitattributes"} == local
    assert run.read_pushes()[0]["commit_oid"] == result.commit_oid

    # The downloaded adapter loads with peft and answers as the local one does.
    ids = torch.tensor([[1, 5, 9, 14, 2, 7]])
    logits = []
    for folder in (run.adapter_dir, downloaded):
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        logits.append(PeftModel.from_pretrained(base, str(folder)).eval()(ids).logits)
    assert torch.equal(logits[0], logits[1])
    base_logits = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()(ids).logits
    assert not torch.allclose(base_logits, logits[0]), "the adapter changes answers"

    assert_no_token(folder_bytes(run.path), *hub.files("alice/p5-facts").values(), caplog.text, *capsys.readouterr())


def _initial(hub, repo_id: str) -> str:
    repo = hub.repos[repo_id]
    return next(sha for sha, m in repo.messages.items() if m == "initial commit")


def test_pushing_again_makes_a_new_commit_when_something_changed(hub, run):
    first = push(run, PublishConfig(repo="alice/again", public=True), token=ALICE)
    same = push(run, PublishConfig(repo="alice/again"), token=ALICE)
    assert first.created and not first.private
    assert same.unchanged and same.commit_oid == first.commit_oid and hub.commit_count("alice/again") == 2
    with_merged = push(run, PublishConfig(repo="alice/again", merged=True, message="with merged"), token=ALICE)
    assert not with_merged.created and not with_merged.private, "an existing repository keeps its visibility"
    assert not with_merged.unchanged and hub.commit_count("alice/again") == 3
    assert hub.repos["alice/again"].messages[with_merged.commit_oid] == "with merged"
    assert "merged/config.json" in hub.files("alice/again")
    # The adapter changes (retrained) and is pushed without its merged model: the old merged/ goes.
    (run.adapter_dir / "training_metrics.json").write_text("[]")
    progress = RecordingProgress()
    again = push(run, PublishConfig(repo="alice/again"), token=ALICE, progress=progress)
    files = hub.files("alice/again")
    assert not any(p.startswith("merged/") for p in files) and files["training_metrics.json"] == b"[]"
    assert any("removing the repository's merged/" in e[1] for e in progress.events if e[0] == "log")
    pushes = [p["commit_oid"] for p in run.read_pushes()]
    assert pushes == [first.commit_oid, same.commit_oid, with_merged.commit_oid, again.commit_oid]


def test_push_to_a_branch_with_the_merged_model(hub, run):
    result = push(run, PublishConfig(repo="team/shared", merged=True, revision="dev"), token=ALICE)
    dev, main = hub.files("team/shared", "dev"), hub.files("team/shared", "main")
    assert result.revision == "dev" and result.url.endswith("/team/shared/tree/dev")
    assert "merged/config.json" in dev and any(p.startswith("merged/model") for p in dev)
    assert dev["merged/config.json"] == (run.merged_dir / "config.json").read_bytes()
    assert set(main) == {".gitattributes"}, "main is untouched"


def test_a_contributor_pushes_to_a_new_repository_of_the_organization(hub, run):
    result = push(run, PublishConfig(repo="helpers/p5"), token=ALICE)
    assert result.created and "adapter_model.safetensors" in hub.files("helpers/p5")


def test_without_a_token_of_its_own_a_push_uses_the_servers_only_when_allowed(hub, run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", ALICE)
    with pytest.raises(PublishError, match="no Hugging Face token"):
        push(run, PublishConfig(repo="alice/x"), server_token=False)
    assert push(run, PublishConfig(repo="alice/x")).repo_id == "alice/x"


def test_the_cli_pushes_with_the_environments_token(hub, run, monkeypatch, capsys):
    from kinject.cli.main import main

    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert main(["push", str(run), "--repo", "alice/from-cli"]) == 0
    out, err = capsys.readouterr()
    assert f"{hub.url}/alice/from-cli" in out.splitlines()[-1]
    assert "private, new repository on main" in out
    assert_no_token(out, err, folder_bytes(run.path))


# ------------------------------------------------------------------------------------------------------ card


def test_the_card_records_sources_training_evaluation_and_usage(hub, run):
    push(run, PublishConfig(repo="alice/card"), token=ALICE)
    card = hub.files("alice/card")["README.md"].decode()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    # The base is a local folder: the Hub takes only a model id as base_model, so the card names it in its text.
    assert "base_model" not in meta and "license" not in meta
    assert meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-generation" and {"lora", "kinject"} <= set(meta["tags"])
    local = Path(RunDir(run).section("model")["model"])
    assert f"local folder, `{local.name}`" in body and str(local) not in card, "no local paths in a card"
    assert f"model: {local.name}" in body

    (source,) = run.read_sources()
    row = next(line for line in body.splitlines() if source["sha256"] in line)
    assert "p5.txt" in row and source["fetched_at"] in row and f"| {source['tokens']} |" in row
    assert "packing efficiency" in body and "blocks of 64 tokens" in body
    assert "learning_rate: 0.05" in body and "max_steps: 6" in body and "lora_r:" in body
    report = run.read_eval()
    a = report["adapter"]
    assert f"({a['knowledge_correct']}/{a['knowledge_scored']})" in body
    assert f"{report['forgetting']['kl_mean']:.3f}" in body and "perplexity" in body
    b = report["base"]
    looped = f"| {b['chat_looping']}/{b['chat_answers']} | {a['chat_looping']}/{a['chat_answers']} |"
    assert f"| answers caught in a loop {looped}" in body
    assert "--lora-adapters alice/card" in body and "--lora-modules card=alice/card" in body
    assert 'PeftModel.from_pretrained(base, "alice/card")' in body


def test_licenses_of_known_bases():
    assert base_license("HuggingFaceTB/SmolLM2-135M-Instruct") == "apache-2.0"
    assert base_license("meta-llama/Llama-2-13b-chat-hf") == "llama2"
    assert base_license("someone/unknown-model") is None


def test_the_bundled_model_is_named_by_its_hub_id(hub, run):
    from kinject.models.loading import BUNDLED_HUB_ID

    run.update_config(model={**run.section("model"), "model": "smollm2-135m-instruct"})
    push(run, PublishConfig(repo="alice/bundled"), token=ALICE)
    card = hub.files("alice/bundled")["README.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == BUNDLED_HUB_ID and meta["license"] == "apache-2.0"
    assert meta["base_model_relation"] == "adapter"
    assert f'AutoModelForCausalLM.from_pretrained("{BUNDLED_HUB_ID}")' in card
    assert f"--model-id {BUNDLED_HUB_ID} --lora-adapters alice/bundled" in card
    assert "serve --model smollm2-135m-instruct --adapter bundled=alice/bundled" in card


def test_a_card_never_shows_the_scores_of_an_earlier_adapter(hub, run):
    report = run.read_eval()
    run_eval = {**report, "created_at": "2000-01-01T00:00:00Z"}  # evaluated before this adapter was saved
    import json as _json

    (run.path / "eval.json").write_text(_json.dumps(run_eval))
    push(run, PublishConfig(repo="alice/stale"), token=ALICE)
    body = hub.files("alice/stale")["README.md"].decode()
    assert "Not evaluated since this adapter was trained" in body and "| knowledge accuracy |" not in body


def test_the_loopback_hub_refuses_a_path_as_base_model(hub, run, monkeypatch):
    monkeypatch.setattr("kinject.sharing.card._hub_base", lambda model: "/home/someone/models/base")
    with pytest.raises(PublishError, match="refused the request while uploading the files: Invalid metadata"):
        push(run, PublishConfig(repo="alice/bad-card"), token=ALICE)


def test_training_names_the_bundled_base_by_its_hub_id(run, tiny_model_dir):
    """peft records the folder the base was loaded from; for the bundled model that is this machine's cache, so
    the saved adapter names the Hub original instead (the tiny model stands in for the bundled one here)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kinject.models.loading import BUNDLED_HUB_ID, load_tokenizer, resolve_model
    from kinject.settings.training import TrainConfig as Train
    from kinject.training.loop import save_adapter

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(run.adapter_dir))
    saved = json.loads((run.adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert saved == str(tiny_model_dir)
    run.update_config(model={**run.section("model"), "model": "smollm2-135m-instruct"})
    tokenizer = load_tokenizer(resolve_model(str(tiny_model_dir)))
    save_adapter(run, model, tokenizer, None, Train(preset="cpu-demo"), "done", 6, 6)
    config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BUNDLED_HUB_ID


# ---------------------------------------------------------------------------------------------------- errors


# Each case prepares the failure (on the hub or the run) and returns the push that must fail.


def _no_token(run, hub):
    return lambda: push(run, PublishConfig(repo="alice/x"))


def _bad_token(run, hub):
    return lambda: push(run, PublishConfig(repo="alice/x"), token="hf_notAValidToken0123456789abcdefXYZ")


def _read_token(run, hub):
    return lambda: push(run, PublishConfig(repo="rita/x"), token=READER)


def _someone_elses(run, hub):
    return lambda: push(run, PublishConfig(repo="bob/taken"), token=ALICE)


def _foreign_namespace(run, hub):
    return lambda: push(run, PublishConfig(repo="carol/new"), token=ALICE)


def _read_only_org(run, hub):
    return lambda: push(run, PublishConfig(repo="readers/x"), token=ALICE)


def _network(run, hub):
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{closed}"  # the test's monkeypatch restores it
    return lambda: push(run, PublishConfig(repo="alice/x", retries=1, backoff_s=0), token=ALICE)


def _server_errors(run, hub):
    hub.fail["create"] = [503, 502, 500]
    return lambda: push(run, PublishConfig(repo="alice/x", retries=2, backoff_s=0), token=ALICE)


def _commit_forbidden(run, hub):
    hub.fail["commit"] = [403]
    return lambda: push(run, PublishConfig(repo="alice/x"), token=ALICE)


def _no_adapter(run, hub):
    import shutil

    shutil.rmtree(run.adapter_dir)
    return lambda: push(run, PublishConfig(repo="alice/x"), token=ALICE)


def _no_merged(run, hub):
    import shutil

    shutil.rmtree(run.merged_dir)
    return lambda: push(run, PublishConfig(repo="alice/x", merged=True), token=ALICE)


@pytest.mark.parametrize(
    "case, says",
    [
        (_no_token, "no Hugging Face token: paste a write token into the Token field or set HF_TOKEN"),
        (_bad_token, "refused the token (401)"),
        (_read_token, "is read-only"),
        (_someone_elses, "bob/taken belongs to bob, not to your token's user alice"),
        (_foreign_namespace, "cannot create repositories under carol"),
        (_read_only_org, "your role in the organization readers is 'read'"),
        (_network, "could not reach the Hub"),
        (_server_errors, "the Hub kept failing (500"),
        (_commit_forbidden, "no right to write to alice/x (403)"),
        (_no_adapter, "has no trained adapter yet"),
        (_no_merged, "has no merged model to upload"),
    ],
)
def test_each_failure_says_why_and_leaves_the_run_as_it_was(case, says, hub, run, monkeypatch, caplog, capsys):
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url, token=BOB).create_repo("bob/taken")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    caplog.set_level(logging.DEBUG)
    attempt = case(run, hub)
    before = tree(run.path)
    with pytest.raises(PublishError) as err:
        attempt()
    assert says in str(err.value)
    assert tree(run.path) == before, "a failed push changed the run"
    assert not run.read_pushes()
    assert_no_token(str(err.value), caplog.text, *capsys.readouterr(), folder_bytes(run.path))
    assert set(hub.repos) <= {"bob/taken", "alice/x"}
    if "alice/x" in hub.repos:
        assert hub.commit_count("alice/x") == 1, "nothing was committed"


def test_a_server_error_is_retried_and_the_retry_shown(hub, run, monkeypatch, capsys):
    from kinject.cli.main import main

    hub.fail["create"] = [503]
    hub.fail["commit"] = [502]
    progress = RecordingProgress()
    result = push(run, PublishConfig(repo="alice/retried", backoff_s=0.01), token=ALICE, progress=progress)
    logs = [e[1] for e in progress.events if e[0] == "log"]
    assert any("the Hub answered 503 while creating the repository; retry 1/4" in m for m in logs), logs
    assert any("the Hub answered 502 while uploading the files; retry 1/4" in m for m in logs), logs
    assert result.commit_oid in hub.repos["alice/retried"].commits

    hub.fail["commit"] = [500]
    (run.adapter_dir / "training_metrics.json").write_text("[]")  # something to commit
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert main(["push", str(run), "--repo", "alice/retried", "--backoff-s", "0.01"]) == 0
    err = capsys.readouterr().err
    assert "the Hub answered 500 while uploading the files; retry 1/4" in err
    assert_no_token(err)


def test_stop_ends_a_push_before_anything_is_committed(hub, run):
    class StopNow(RecordingProgress):
        def should_stop(self):
            return True

    before = tree(run.path)
    with pytest.raises(InterruptedError, match="nothing was committed"):
        push(run, PublishConfig(repo="alice/stopped"), token=ALICE, progress=StopNow())
    hub.fail["create"] = [503]
    with pytest.raises(InterruptedError, match="while waiting to retry creating the repository"):
        push(run, PublishConfig(repo="alice/stopped", backoff_s=30), token=ALICE, progress=_StopAfterLog())
    assert "alice/stopped" not in hub.repos and tree(run.path) == before


class _StopAfterLog(RecordingProgress):
    """Asks to stop once something was logged (the retry notice)."""

    def should_stop(self):
        return any(kind == "log" for kind, _ in self.events)


def test_an_unexpected_failure_in_the_cli_prints_no_token(hub, run, monkeypatch, capsys):
    from kinject.cli.main import main

    def boom(*args, **kwargs):
        raise RuntimeError(f"unexpected, with the token {ALICE} in its message")

    monkeypatch.setattr("kinject.sharing.publish.model_card", boom)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert main(["push", str(run), "--repo", "alice/boom"]) == 1
    out, err = capsys.readouterr()
    assert "RuntimeError: unexpected, with the token *** in its message" in err
    assert_no_token(out, err)


# ------------------------------------------------------------------------------------------ Hub ids as adapters


def test_hub_ids_are_told_from_folders(tmp_path, monkeypatch):
    assert parse_hub_id("alice/p5") == ("alice/p5", None)
    assert parse_hub_id("alice/p5@v2") == ("alice/p5", "v2")
    assert parse_hub_id("a/b/c") is None and parse_hub_id("just-a-name") is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "p5").mkdir(parents=True)
    assert parse_hub_id("runs/p5") is None, "an existing folder wins over a Hub id"


def test_a_hub_adapter_answers_in_ask_serve_chat_and_eval(hub, run, tiny_model_dir, capsys):
    import httpx

    from kinject.cli.main import main
    from kinject.serving.engine import Engine
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    push(run, PublishConfig(repo="alice/shared"), token=ALICE)
    hub.repos["alice/shared"].private = False  # downloads need no token

    question = "What GPUs do P5 instances have?"
    assert main(["ask", str(run), question, "--max-new-tokens", "6"]) == 0
    local = capsys.readouterr().out.strip()
    assert main(["ask", "alice/shared", question, "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.strip() == local

    engine = Engine(str(tiny_model_dir), {"from-hub": "alice/shared", "local": str(run)})
    server = ServerThread(create_app(engine, GenerationConfig(max_new_tokens=6)))
    try:
        answers = {}
        for name in ("from-hub", "local"):
            body = {"inputs": question, "parameters": {"adapter_id": name, "max_new_tokens": 6}}
            answers[name] = httpx.post(server.url + "/generate", json=body, timeout=60).json()["generated_text"]
        assert answers["from-hub"] == answers["local"]
        # chat names a Hub adapter the server has not loaded: kinject's server downloads it.
        assert main(["chat", "hi", "--endpoint", server.url, "--model", "alice/shared@main", "--no-stream"]) == 0
        assert "alice/shared@main" in engine.names()
    finally:
        server.stop()

    assert main(["eval", "alice/shared", "--retention", "--no-forgetting", "--auto-probes", "0"]) == 0
    out = capsys.readouterr().out
    hub_run = Path(out.strip().splitlines()[-1].rsplit(" in ", 1)[1])
    assert "hub-runs" in hub_run.parts and RunDir(hub_run).read_eval()["has_adapter"]


def test_a_client_cannot_load_a_private_hub_adapter_with_the_operators_token(hub, run, tiny_model_dir, monkeypatch):
    import httpx

    from kinject.serving.engine import Engine
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    push(run, PublishConfig(repo="alice/secret"), token=ALICE)
    assert hub.repos["alice/secret"].private
    monkeypatch.setenv("HF_TOKEN", ALICE)  # the operator's token could read it
    engine = Engine(str(tiny_model_dir))
    server = ServerThread(create_app(engine, GenerationConfig(max_new_tokens=6)))
    try:
        response = httpx.post(
            server.url + "/kinject/adapters", json={"name": "stolen", "path": "alice/secret"}, timeout=60
        )
        assert response.status_code == 422 and "alice/secret" in response.json()["error"]
        assert "stolen" not in engine.names()
        hub.repos["alice/secret"].private = False  # once public, anyone may load it
        response = httpx.post(
            server.url + "/kinject/adapters", json={"name": "shared", "path": "alice/secret"}, timeout=60
        )
        assert response.status_code == 201 and "shared" in engine.names()
    finally:
        server.stop()


def test_a_missing_hub_adapter_is_a_clear_error(hub, capsys):
    from kinject.cli.main import main

    assert main(["ask", "alice/nothing-here", "hi"]) == 1
    assert "no Hub repository alice/nothing-here" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ app


def test_the_publish_tab_pushes_and_links_to_the_result(hub, trained, tmp_path, monkeypatch):
    import shutil

    from gradio_client import Client

    from kinject.settings.services import AppConfig
    from kinject.web import state
    from kinject.web.handlers import button_states
    from kinject.web.layout import build_ui

    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs")
    shutil.copytree(trained, tmp_path / "runs" / "p5")
    demo = build_ui(AppConfig())
    demo.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        client = Client(demo.local_url, verbose=False)
        assert button_states("p5")[-1]["interactive"], "Push is enabled for a run with an adapter"
        card = client.predict(run="p5", repo="alice/from-app", api_name="/card")
        assert "library_name: peft" in card and "## Evaluation" in card

        status, link = client.predict(run="p5", repo="alice/from-app", token=ALICE, api_name="/push")
        assert f"[alice/from-app]({hub.url}/alice/from-app)" in link and "commit" in link
        assert "push" in status and "done" in status
        assert hub.repos["alice/from-app"].private, "private unless the toggle is off"
        status, link = client.predict(
            run="p5", repo="alice/public-one", token=ALICE, private=False, merged=True, api_name="/push"
        )
        assert not hub.repos["alice/public-one"].private and "merged/config.json" in hub.files("alice/public-one")

        # A failure is the link's text, not an error raised: that would mark the status area (every tab's) too.
        monkeypatch.setenv("HF_TOKEN", ALICE)  # the operator's: not used unless the operator allowed it
        _, link = client.predict(run="p5", repo="alice/x", token="", api_name="/push")
        assert link.startswith("**Push failed:** Paste a Hugging Face write token")
        assert "alice/x" not in hub.repos
        status, link = client.predict(
            run="p5", repo="alice/x", token="hf_notAValidToken0123456789abcdefXYZ", api_name="/push"
        )
        assert link.startswith("**Push failed:**") and "refused the token (401)" in link
        assert "p5" in status and "Push failed" not in status, "the status area shows the run's status as ever"
        _, link = client.predict(run="p5", repo="not a repo", token=ALICE, api_name="/push")
        assert link.startswith("**Push failed:**") and "must be OWNER/NAME" in link
        _, link = client.predict(run="p5", repo="", token=ALICE, api_name="/push")
        assert link == "**Push failed:** Give the repository to push to as OWNER/NAME in the Repo field (Publish tab)."
        assert_no_token(folder_bytes(tmp_path / "runs"), link, status)
    finally:
        demo.close()


def _with_a_source_on_this_machine(run: RunDir) -> str:
    """Add a page fetched from a loopback server to the run's sources (as with private URLs allowed); its URL."""
    url = "http://127.0.0.1:8765/p5.html"
    rows = run.read_sources()
    run.write_sources([*rows, {**rows[0], "input": url, "kind": "url", "title": "P5", "sha256": "0" * 64}])
    return url


def test_a_push_warns_of_sources_on_this_machine_and_pushes_the_card_as_ever(hub, run):
    from kinject.sharing.card import model_card

    url = _with_a_source_on_this_machine(run)
    progress = RecordingProgress()
    result = push(run, PublishConfig(repo="alice/local"), token=ALICE, progress=progress)
    assert f"`{url}` (a loopback address)" in result.warning
    assert any(url in message for kind, message in progress.events if kind == "log")
    card = hub.files("alice/local")["README.md"].decode()
    assert card.startswith("---\n") and yaml.safe_load(card.split("---\n")[1])["library_name"] == "peft"
    assert card == model_card(run, "alice/local") and url in card, "the pushed card is the card, warning or not"
    assert "Warning" not in card


def test_a_failed_push_from_the_app_is_its_links_text_not_an_error(hub, run, monkeypatch):
    """An event that raises marks each of its outputs with an error badge, the status area (on every tab) among
    them: a failed push says so in its link's place and in a toast, and leaves the status area as it is."""
    import gradio as gr

    from kinject.runtime.jobs import JobManager
    from kinject.web import state
    from kinject.web.job_handlers import do_push

    monkeypatch.setattr(state, "RUNS_ROOT", run.path.parent)
    monkeypatch.setattr(state, "JOBS", JobManager())
    with pytest.warns(UserWarning, match="refused the token"):  # gr.Warning, outside a gradio event
        *_, (status, link) = do_push("run", token="hf_notAValidToken0123456789abcdefXYZ", repo="alice/x")
    assert link.startswith("**Push failed:** the Hub refused the token (401)")
    assert status.startswith("**run**") and "Push" not in status
    with pytest.warns(UserWarning, match="Repo field"):
        (status, link), *more = do_push("run", token=ALICE)
    assert not more and status == gr.skip()
    assert link == "**Push failed:** Give the repository to push to as OWNER/NAME in the Repo field (Publish tab)."
    with pytest.warns(UserWarning, match="Choose a run"):
        *_, (status, link) = do_push("", token=ALICE, repo="alice/x")
    assert link.startswith("**Push failed:** Choose a run first")

    *_, (status, link) = do_push("run", token=ALICE, repo="alice/public-pages")
    assert link.startswith("**Pushed:**") and "Warning" not in status
    url = _with_a_source_on_this_machine(run)
    with pytest.warns(UserWarning, match="127.0.0.1"):
        *_, (status, link) = do_push("run", token=ALICE, repo="alice/app")
    assert link.startswith("**Pushed:**") and "**Push done:**" in status
    assert "**Warning:** The model card lists 1 source that is no public web page" in status and url in status
    assert_no_token(status, link)


def test_the_card_says_when_the_adapter_answers_no_more_than_the_base():
    from kinject.sharing.card import eval_section

    side = {"knowledge_accuracy": 0.0, "knowledge_correct": 0, "knowledge_scored": 7, "retention_accuracy": 1.0}
    same = "\n".join(eval_section({"base": side, "adapter": dict(side)}))
    assert "answers no more knowledge probes than the base (0 of 7 against 0 of 7)" in same
    better = "\n".join(eval_section({"base": side, "adapter": {**side, "knowledge_correct": 3}}))
    assert "no more knowledge probes" not in better


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
    # A merged/ that records no adapter (made by hand, say) is refused too.
    run.merge_record_path().unlink()
    with pytest.raises(PublishError, match="does not record which adapter"):
        push(run, PublishConfig(repo="alice/x", merged=True), token=ALICE)
    push(run, PublishConfig(repo="alice/x"), token=ALICE)  # the adapter alone still goes


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
