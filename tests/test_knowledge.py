"""The product's promise on the real bundled chat model: the adapter learns the page's facts and still chats."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kinject.models.generate import answer, load_for_run
from kinject.settings.stages import GenerationConfig

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
