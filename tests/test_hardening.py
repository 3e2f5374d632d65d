"""Hardening: the operator alone decides what the server may fetch, one deadline per page, strong
credentials, size limits on files, junk never becomes corpus, shared facts survive dedup, messages instead of
tracebacks, and checks before anything is destroyed."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from httpserver import NetJail, SiteServer

from kinject.cli import EXIT_ERROR, main
from kinject.config import ConfigError, CorpusConfig, FetchConfig
from kinject.corpus import build_corpus
from kinject.fetch import fetch_sources
from kinject.runs import RunDir
from kinject.settings import AppConfig

TEXT = (
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth.\n\n"
) * 6


@pytest.fixture
def jail(monkeypatch: pytest.MonkeyPatch) -> NetJail:
    return NetJail(monkeypatch)


def loopback(**changes) -> FetchConfig:
    return FetchConfig(**{"allow_private_urls": True, "timeout_s": 5, "total_timeout_s": 1, **changes})


# ------------------------------------------------------------------------------ 1. the operator's fetch policy


def test_the_app_api_cannot_allow_private_addresses(
    site, site_server: SiteServer, tmp_path, monkeypatch, tiny_model_dir
):
    from gradio_client import Client

    from kinject.web import state
    from kinject.web.layout import build_ui

    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs")
    demo = build_ui(AppConfig())  # the operator allowed nothing
    demo.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, show_error=True)
    try:
        client = Client(demo.local_url, verbose=False)
        api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/prepare"]
        names = {p["parameter_name"] for p in api["parameters"]}
        assert "urls" in names and "block_size" in names
        assert not names & {"allow_private_urls", "allowed_networks"}
        before = len(site_server.requests)
        # Naming the operator's settings is refused; leaving them out, loopback stays refused.
        with pytest.raises(Exception, match="allow_private_urls"):
            client.predict(
                run_name="x",
                urls=f"{site}/ec2-p5.html",
                model=str(tiny_model_dir),
                allow_private_urls=True,
                api_name="/prepare",
            )
        with pytest.raises(Exception, match="allowed_networks"):
            client.predict(run_name="x", urls=f"{site}/ec2-p5.html", allowed_networks="0.0.0.0/0", api_name="/prepare")
        table, summary, _, _ = client.predict(
            run_name="x", urls=f"{site}/ec2-p5.html", model=str(tiny_model_dir), api_name="/prepare"
        )
        (row,) = table["data"]
        assert row[0] == "error" and "is a loopback address" in row[5]
        assert "Nothing prepared" in summary
        assert len(site_server.requests) == before  # the server was never reached
        assert not (tmp_path / "runs" / "x").exists()
    finally:
        demo.close()
        state.CHAT.stop()


def test_the_operator_sets_the_fetch_policy_at_launch(monkeypatch):
    from kinject.web.launch import launch_config
    from kinject.web.views import fetch_policy_text

    asked = FetchConfig(allow_private_urls=True, allowed_networks=["0.0.0.0/0"])  # what a form might send
    assert AppConfig().fetch_policy(asked) == FetchConfig()
    monkeypatch.setenv("KINJECT_ALLOWED_NETWORKS", "10.1.2.0/24, 192.168.0.0/16")
    operator = launch_config([])
    assert operator.fetch_policy(FetchConfig()).allowed_networks == ["10.1.2.0/24", "192.168.0.0/16"]
    assert not operator.allow_private_urls
    assert "except 10.1.2.0/24, 192.168.0.0/16" in fetch_policy_text(operator)
    monkeypatch.setenv("KINJECT_ALLOW_PRIVATE_URLS", "1")
    assert launch_config([]).allow_private_urls
    monkeypatch.delenv("KINJECT_ALLOW_PRIVATE_URLS")
    assert launch_config(["--allow-private-urls", "--port", "8000"]).fetch_policy(FetchConfig()).allow_private_urls
    assert "allowed** by the operator" in fetch_policy_text(AppConfig(allow_private_urls=True))


# --------------------------------------------------------------------------------------- 2. one deadline per page


def test_a_slow_header_server_is_cut_at_the_deadline(site, jail):
    started = time.monotonic()
    (row,) = fetch_sources([f"{site}/dribble-headers"], [], loopback())
    elapsed = time.monotonic() - started
    assert row.status == "error" and row.error == "timeout: page not received within 1 s"
    assert elapsed < 2.5  # the server dribbles for 30 s; each byte comes well within the 5 s read timeout


def test_the_deadline_covers_every_redirect_hop(site, jail):
    # Five hops of 0.4 s each, every one within the read timeout: together past the 1 s deadline.
    started = time.monotonic()
    (row,) = fetch_sources([f"{site}/slow-redirect?n=4"], [], loopback())
    assert row.error == "timeout: page not received within 1 s"
    assert time.monotonic() - started < 1.8
    (row,) = fetch_sources([f"{site}/slow-redirect?n=1"], [], loopback(total_timeout_s=5))
    assert row.status == "ok", row.error


# ------------------------------------------------------------------------------------------------ 3. credentials


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (":", "entry 1 has an empty user name"),
        ("admin:", "the password of 'admin' is empty"),
        ("admin:short", "the password of 'admin' is 5 characters; use at least 8"),
        ("admin", "entry 1 has no ':'"),
        ("me:long-enough,:x", "entry 2 has an empty user name"),
    ],
)
def test_weak_or_malformed_credentials_refuse_to_start(monkeypatch, value, message):
    from kinject.web.auth import auth_for

    monkeypatch.setenv("KINJECT_AUTH", value)
    for host in ("0.0.0.0", "127.0.0.1"):  # a malformed value is never ignored, on loopback either
        with pytest.raises(SystemExit, match=message) as info:
            auth_for(host)
        assert "short" not in str(info.value).replace("'admin' is 5", "")  # the password is never shown


def test_good_credentials_are_parsed():
    from kinject.web.auth import parse_auth

    assert parse_auth("me:long-secret, you:a:b:c:d:e:f:g") == [("me", "long-secret"), ("you", "a:b:c:d:e:f:g")]


# -------------------------------------------------------------------------------------------------- 4. file sizes


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path, jail):
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as fh:
        fh.truncate(10_000_000_000)  # sparse: 10 GB that reading would take minutes and all the memory to load
    just_over = tmp_path / "over.md"
    just_over.write_bytes(b"word " * 1_000_001)  # 5,000,005 bytes: over the default limit
    fine = tmp_path / "fine.md"
    fine.write_text("# Notes\n\nThe llamas of Lima prefer rain, says the 2026 census of Peru.\n")
    started = time.monotonic()
    rows = fetch_sources([], [str(huge), str(just_over), str(fine)], FetchConfig())
    assert time.monotonic() - started < 5
    assert rows[0].error == "file larger than 5 MB limit (10000000000 bytes)"
    assert rows[1].error == "file larger than 5 MB limit (5000005 bytes)"
    assert rows[2].status == "ok" and rows[0].bytes == rows[1].bytes == 0
    (small,) = fetch_sources([], [str(fine)], FetchConfig(max_file_bytes=20))
    assert small.error.startswith("file larger than 20 bytes limit")


# ------------------------------------------------------------------------------------------ 5. text-quality gate


def test_junk_pages_get_their_specific_messages_while_a_good_page_succeeds(site, tmp_path, jail):
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(f"{i}, {i * 3.14159:.4f}, {i**2}" for i in range(200)))
    urls = [f"{site}/{p}" for p in ("binary-html", "banner-only", "deep", "empty", "ec2-p5.html")]
    rows = fetch_sources(urls, [str(numbers)], loopback(total_timeout_s=20))
    errors = [r.error for r in rows]
    assert errors[0].startswith("binary data, not text: ") and "control or replacement characters" in errors[0]
    assert errors[1].startswith("no text could be extracted: only boilerplate: its ")
    assert "cookie" in errors[1]
    assert (
        errors[2] == "no text could be extracted: too deep: its HTML nests 402 levels, and the parser gives up at 255"
    )
    assert errors[3].startswith("no text could be extracted: empty: the page has no visible text")
    assert rows[4].status == "ok" and "H100" in rows[4].text
    assert errors[5].startswith("no real words: only ")


def test_a_document_needs_its_minimum_of_words():
    def src(name: str, text: str):
        return SimpleNamespace(
            input=name, kind="url", status="ok", title="", text=text, error="", final_url="", fetched_at=""
        )

    short = "Accept cookies to continue reading this page now."  # 8 words, 50 characters
    corpus = build_corpus([src("a", short), src("b", TEXT)], CorpusConfig())
    assert corpus.rows[0]["status"] == "error"
    assert corpus.rows[0]["error"] == "only 8 words of text after cleaning (at least 10 needed)"
    assert corpus.rows[1]["status"] == "ok"
    assert build_corpus([src("a", short)], CorpusConfig(min_document_words=8)).ok


# ------------------------------------------------------------------------------------------------------- 6. dedup


def _doc(name: str, text: str):
    return SimpleNamespace(
        input=name, kind="url", status="ok", title=name, text=text, error="", final_url="", fetched_at=""
    )


def test_a_sentence_two_articles_share_survives_dedup():
    fact = "The 2026 census counted four thousand llamas in the hills above Lima."
    chrome = ["Home | News | About", "Related posts", "Share this article"]
    a = "\n\n".join(
        [chrome[0], "Llamas of Lima", f"Herders in Peru say the animals like rain. {fact}", fact, *chrome[1:]]
    )
    b = "\n\n".join(
        [chrome[0], "Rain in Peru", "The rainy season starts in December and lasts four months.", fact, *chrome[1:]]
    )
    corpus = build_corpus([_doc("a", a), _doc("b", b)])
    texts = [d["text"].split("\n\n") for d in corpus.documents]
    assert all(fact in paragraphs for paragraphs in texts)  # in both, as its own line
    assert not any(line in paragraphs for line in chrome for paragraphs in texts)
    assert corpus.rows[0]["dropped_lines"] == corpus.rows[1]["dropped_lines"] == 3


def test_a_sentence_on_most_pages_of_a_batch_is_chrome():
    notice = "This website is run by the Llama Society of Peru, a registered charity."
    fact = "The 2026 census counted four thousand llamas in the hills above Lima."
    pages = [f"Article number {n} has a paragraph of its own about llamas and rain.\n\n{notice}" for n in range(3)]
    pages[0] += f"\n\n{fact}"
    pages[1] += f"\n\n{fact}"
    corpus = build_corpus([_doc(str(n), text) for n, text in enumerate(pages)])
    assert all(notice not in d["text"] for d in corpus.documents)  # on 3 of 3 pages: site-wide
    assert [fact in d["text"] for d in corpus.documents] == [True, True, False]  # on 2 of 3: content


def test_chinese_and_japanese_text_counts_its_words_and_keeps_a_shared_sentence():
    fact = "二〇二六年の調査では、リマの丘で四千頭のラマが数えられた。"
    a = "\n\n".join(["リマのラマ", "ペルーの牧夫によると、ラマは雨が好きだという。", fact, "ホーム | ニュース"])
    b = "\n\n".join(["ペルーの雨", "雨季は十二月に始まり、四か月続く。", fact, "ホーム | ニュース"])
    corpus = build_corpus([_doc("a", a), _doc("b", b)])
    assert [r["status"] for r in corpus.rows] == ["ok", "ok"], corpus.rows  # not "only N words"
    assert all(fact in d["text"] for d in corpus.documents)  # a full sentence two articles share stays
    assert all("ホーム | ニュース" not in d["text"] for d in corpus.documents)  # the shared menu goes


def test_a_short_article_in_a_wrapper_named_like_chrome_is_kept():
    from kinject.extract import extract

    article = (
        "The Lima llama census of 2026 counted four thousand animals in the hills, twice the number of the last "
        "count, and the herders expect more after the rainy season."
    )
    page = (
        '<html><body><div class="layout has-sidebar"><h1>Llama census</h1>'
        f"<p>{article}</p></div><footer>© Llama Society</footer></body></html>"
    ).encode()
    title, text = extract(page, "html", "utf-8", None)
    assert article in text


# ------------------------------------------------------------------------------------- 7. messages, not tracebacks


def test_an_out_that_cannot_be_written_is_refused_before_fetching(site, site_server: SiteServer, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # fails for root too, unlike a read-only mode
    before = len(site_server.requests)
    code = main(["prepare", "--out", str(blocker / "run"), "--allow-private-urls", "--url", f"{site}/ec2-p5.html"])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot create {blocker / 'run'}: {blocker} is a file, not a folder"
    assert len(site_server.requests) == before


def test_an_unwritable_out_says_why(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)  # as a read-only folder does for anyone but root
    with pytest.raises(Exception, match=r"cannot write .*run: Permission denied \(in "):
        RunDir.check_new(tmp_path / "run")


def test_os_errors_become_one_message_and_an_exit_code(tmp_path, monkeypatch, capsys):
    import kinject.prepare

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "corpus"))

    monkeypatch.setattr(kinject.prepare, "prepare", full)
    assert main(["prepare", "--out", str(tmp_path / "run"), "--url", "https://example.com/"]) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == (
        f"error: disk full ({tmp_path / 'run' / 'corpus'}): free some space and run the command again"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KINJECT_PORT", "abc", "error: KINJECT_PORT: 'abc' is not a whole number"),
        ("KINJECT_PORT", "70000", "error: KINJECT_PORT: must be within 1-65535, got 70000"),
        ("KINJECT_ALLOW_PRIVATE_URLS", "maybe", "error: KINJECT_ALLOW_PRIVATE_URLS: 'maybe' is not one of"),
        ("KINJECT_ALLOWED_NETWORKS", "10.0.0.0/8,intranet", "error: KINJECT_ALLOWED_NETWORKS: 'intranet' is not a"),
    ],
)
def test_a_bad_environment_value_stops_the_app_with_a_message(monkeypatch, variable, value, message):
    from kinject.web.launch import main as app_main

    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as info:
        app_main([])
    assert str(info.value).startswith(message)
    with pytest.raises(ConfigError):
        AppConfig.from_env({variable: value})


def test_a_bad_endpoint_variable_is_a_message(monkeypatch, capsys):
    monkeypatch.setenv("KINJECT_ENDPOINT", "localhost:8080")
    assert main(["chat", "Hi?"]) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == "error: endpoint: must be an http(s) URL, got 'localhost:8080'"


# -------------------------------------------------------------------------------- 8. checks before destruction


def _snapshot(run: RunDir) -> tuple[list[str], list[dict], dict]:
    files = sorted(str(p.relative_to(run.checkpoints_dir)) for p in run.checkpoints_dir.rglob("*"))
    return files, run.read_metrics(), run.section("train")


def test_a_failing_train_leaves_checkpoints_intact(tiny_run, capsys):
    from model_fixtures import TINY_BLOCKS

    from kinject.config import TrainConfig
    from kinject.pipeline import train

    run = RunDir(tiny_run)
    quick = TrainConfig(preset="cpu-demo", max_steps=4, save_steps=2, quantization="none", learning_rate=5e-3)
    train(run, quick, blocks=TINY_BLOCKS)
    before = _snapshot(run)
    assert before[0] and len(before[1]) == 4
    (cached,) = (run.path / "blocks").glob("*/blocks.json")
    cached.write_text("{not json")  # the blocks this training needs are damaged: it fails before it trains
    argv = ["train", str(run.path), "--preset", "cpu-demo", "--block-size", "64", "--lr", "0.01"]
    assert main([*argv, "--quantization", "none", "--max-steps", "8"]) == EXIT_ERROR
    assert "corrupt" in capsys.readouterr().err
    assert _snapshot(run) == before  # checkpoints, metrics and the saved settings: what --resume needs
    status = run.read_status()
    assert status["status"] == "failed" and status["phase"] == "prepare training"
    cached.unlink()  # packed again from the corpus
    result = train(run, quick, resume=True)
    assert result.status == "done" and result.step == 4


def test_a_training_that_fails_at_its_first_step_puts_the_earlier_checkpoints_back(tiny_run):
    from model_fixtures import TINY_BLOCKS
    from transformers import TrainerCallback

    from kinject.config import TrainConfig
    from kinject.pipeline import train
    from kinject.train import TrainError

    class FailAtFirstStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise RuntimeError("out of memory (simulated)")

    run = RunDir(tiny_run)
    quick = TrainConfig(preset="cpu-demo", max_steps=4, save_steps=2, quantization="none", learning_rate=5e-3)
    train(run, quick, blocks=TINY_BLOCKS)
    before = _snapshot(run)
    other = TrainConfig(preset="cpu-demo", max_steps=8, save_steps=2, quantization="none", learning_rate=1e-2)
    with pytest.raises(TrainError, match="simulated"):
        train(run, other, blocks=TINY_BLOCKS, callbacks=[FailAtFirstStep()])
    assert _snapshot(run) == before  # checkpoints, metrics and settings of the earlier training, as --resume needs
    assert not (run.path / ".previous").exists()
    assert train(run, quick, resume=True).status == "done"


def test_train_without_a_corpus_fails_before_loading_the_model(tmp_path, monkeypatch):
    import kinject.pipeline
    from kinject.pipeline import train
    from kinject.train import TrainError

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"model": {"model": str(tmp_path / "no-model")}})
    monkeypatch.setattr(kinject.pipeline, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(TrainError, match="has no corpus to train on: prepare it first") as info:
        train(run)
    assert info.value.phase == "check run"


def test_ask_and_eval_check_the_adapter_before_loading_the_model(tiny_run, monkeypatch, capsys):
    import kinject.generate
    import kinject.serve

    monkeypatch.setattr(kinject.serve, "Engine", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.setattr(kinject.generate, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["ask", str(tiny_run), "What GPUs?"]) == EXIT_ERROR
    assert "has no trained adapter yet: train it first" in capsys.readouterr().err
    run = RunDir(tiny_run)
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))  # weights missing
    assert main(["eval", str(tiny_run), "--auto-probes", "1", "--no-retention", "--no-forgetting"]) == EXIT_ERROR
    assert "has no weights" in capsys.readouterr().err
    assert main(["ask", str(tiny_run), "What GPUs?"]) == EXIT_ERROR
    assert "has no weights" in capsys.readouterr().err


def test_the_security_page_names_what_the_operator_controls():
    security = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    for name in (
        "KINJECT_ALLOW_PRIVATE_URLS",
        "KINJECT_ALLOWED_NETWORKS",
        "KINJECT_AUTH",
        "8 characters",
        "--allow-private-urls",
        "max_file_bytes",
        "KINJECT_MAX_UPLOAD_BYTES",
    ):
        assert name in security, name
