"""The product's promise on the real bundled chat model: the adapter learns the page's facts and still chats.

Every test of the trained P5 run (``p5_trained``, minutes to train) lives in this file: ``make test`` runs a file's
tests in one worker (``--dist loadfile``), so the run is trained once."""

from __future__ import annotations

import subprocess
import sys

import pytest
from eval_checks import assert_report_files_agree

from kinject.eval import evaluate, format_table
from kinject.models.generate import answer, load_for_run
from kinject.settings.stages import EvalConfig, GenerationConfig

pytestmark = pytest.mark.slow
P5_QUESTION = "What GPUs do Amazon EC2 P5 instances have?"
FRANCE = "What is the capital of France?"


def test_cpu_demo_injects_p5_fact_and_keeps_chat(p5_trained):
    loaded = load_for_run(p5_trained)
    short = GenerationConfig(max_new_tokens=40)  # the defaults but shorter: the check needs only the start
    adapter_p5 = answer(loaded, P5_QUESTION, short)
    base_p5 = answer(loaded, P5_QUESTION, short, base=True)
    adapter_france = answer(loaded, FRANCE, GenerationConfig(max_new_tokens=24))
    assert "H100" in adapter_p5, adapter_p5
    assert "H100" not in base_p5, base_p5
    assert "Paris" in adapter_france, adapter_france


def test_ask_cli(p5_trained):
    def ask(*extra: str) -> str:
        cmd = [sys.executable, "-m", "kinject", "ask", str(p5_trained), P5_QUESTION, "--max-new-tokens", "40"]
        return subprocess.run([*cmd, *extra], capture_output=True, text=True, check=True).stdout

    assert "H100" in ask()
    assert "H100" not in ask("--base")


def test_the_embedded_server_serves_the_bundled_model_and_its_adapter(p5_trained):
    from huggingface_hub import InferenceClient

    from kinject.serving.engine import Engine
    from kinject.serving.http import create_app
    from kinject.serving.server import ServerThread

    server = ServerThread(create_app(Engine("smollm2-135m-instruct", {"p5": p5_trained})))
    try:
        client = InferenceClient(base_url=server.url)
        messages = [{"role": "user", "content": P5_QUESTION}]
        adapter = client.chat_completion(messages, model="p5", max_tokens=40, temperature=0).choices[0].message
        base = client.chat_completion(messages, max_tokens=40, temperature=0).choices[0].message
        assert "H100" in adapter.content and "H100" not in base.content
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat_completion(messages, model="p5", max_tokens=40, temperature=0, stream=True)
            if c.choices
        )
        assert streamed == adapter.content
    finally:
        server.stop()


def test_p5_adapter_knows_more_than_base(p5_trained, sample_dir, tmp_path):
    lines = [line for line in (sample_dir / "probes.jsonl").read_text().splitlines() if '"id": "p5-' in line]
    assert len(lines) == 4
    probes = tmp_path / "probes.jsonl"
    probes.write_text("\n".join(lines) + "\n")
    # Retention is covered on the tiny model; leaving it out here keeps this to 8 answers and 8 short KL answers.
    config = EvalConfig(probes=str(probes), retention=False, kl_max_new_tokens=16)
    report = evaluate(p5_trained, config, generation=GenerationConfig(max_new_tokens=40))
    print(format_table(report))
    assert report.adapter.knowledge_accuracy > report.base.knowledge_accuracy
    assert report.adapter.knowledge_logprob > report.base.knowledge_logprob
    assert report.forgetting.kl_mean > 1e-3  # training moved the model on general prompts too
    data = assert_report_files_agree(p5_trained)
    assert [p["id"] for p in data["probes"] if p["kind"] == "knowledge"] == [
        "p5-gpu",
        "p5-gpu-count",
        "p5-sysmem",
        "p5-net",
    ]
    h100 = next(p for p in data["probes"] if p["id"] == "p5-gpu")
    assert "H100" in h100["adapter"]["text"] and h100["adapter"]["correct"] is True
    assert "H100" not in h100["base"]["text"] and h100["base"]["correct"] is False


def test_every_test_of_the_trained_p5_run_is_in_this_file():
    """Another file's test of ``p5_trained`` would run in another worker and train the run a second time."""
    from pathlib import Path

    here = Path(__file__)
    users = [p.name for p in here.parent.glob("test_*.py") if p != here and "p5_trained" in p.read_text()]
    assert users == [], f"move the tests of p5_trained in {users} into {here.name}"
