"""The bundled model converts once (atomically), loads fast, and renders its chat template."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kinject.models import loading as models


def test_bundled_model_converts_and_loads(bundled_model_dir):
    assert (bundled_model_dir / "config.json").is_file()
    assert list(bundled_model_dir.glob("*.safetensors"))
    resolved = models.resolve_model("smollm2-135m-instruct")
    assert resolved.kind == "bundled" and resolved.path == str(bundled_model_dir)
    model = models.load_model(resolved)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6


def test_chat_template_renders(bundled_tokenizer):
    text = bundled_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What GPUs do P5 instances have?"}], tokenize=False, add_generation_prompt=True
    )
    assert "What GPUs do P5 instances have?" in text
    assert text.rstrip().endswith("assistant")
    assert bundled_tokenizer.eos_token == "<|im_end|>"


def test_conversion_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("KINJECT_HOME", str(tmp_path))

    def boom(gguf, out, progress):
        (out / "config.json").write_text("{}")  # half-written output
        raise KeyboardInterrupt("killed mid-conversion")

    monkeypatch.setattr(models, "_convert_gguf", boom)
    with pytest.raises(KeyboardInterrupt):
        models.ensure_bundled_model()
    folder = models.bundled_model_dir()
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if p.is_dir()]  # no temporary folder left behind


def test_local_folder_and_errors(tiny_model_dir, tmp_path):
    resolved = models.resolve_model(str(tiny_model_dir))
    assert resolved.kind == "local"
    assert models.resolve_model("meta-llama/Llama-2-13b-chat-hf").kind == "hub"
    with pytest.raises(models.ModelError, match="not a model folder"):
        models.resolve_model(str(tmp_path))
    with pytest.raises(models.ModelError, match="does not exist"):
        models.resolve_model("./no/such/folder")
    with pytest.raises(models.ModelError, match="unknown model"):
        models.resolve_model("nonsense")


def test_cli_model_prints_info(bundled_model_dir):
    out = subprocess.run(
        [sys.executable, "-m", "kinject", "model", "--json"], capture_output=True, text=True, check=True
    ).stdout
    info = json.loads(out.strip().splitlines()[-1])
    assert info["kind"] == "bundled" and info["chat_template"] is True
    assert info["parameters"] == 134_515_008


def test_models_loaded_by_two_threads_at_once_are_real(tiny_model_dir):
    """transformers builds a model's parameters on the meta device by patching module construction process-wide, so
    two loads at once (a training starting while the chat server loads its model) could leave one model with meta
    parameters ("Cannot copy out of meta tensor" when training starts). Every build holds one lock."""
    import threading

    from kinject.models.loading import ResolvedModel, load_model

    tiny = ResolvedModel("tiny", str(tiny_model_dir), "local")
    done = threading.Event()

    def keep_loading() -> None:
        while not done.is_set():
            load_model(tiny)

    loader = threading.Thread(target=keep_loading)
    loader.start()
    meta = 0
    try:
        for _ in range(20):
            meta += any(p.is_meta for p in load_model(tiny).parameters())
    finally:
        done.set()
        loader.join()
    assert meta == 0
