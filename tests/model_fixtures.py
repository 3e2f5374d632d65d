"""Model fixtures: the real bundled SmolLM2 (converted once into the cache) and tiny random Llamas.

Imported by conftest.py. Tiny models reuse the bundled tokenizer (real BPE, chat template) with a 2-layer,
16-dim Llama built from a config, so tests train in seconds and load nothing from a hub.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kinject.runtime.progress import Progress
from kinject.settings.stages import BlocksConfig

TINY_BLOCKS = BlocksConfig(block_size=64)  # what ``tiny_run`` is packed with; tests train on it too


class StopAt(Progress):
    """Asks training to stop once step ``step`` has been reported (it ends at the next step)."""

    def __init__(self, step: int):
        self.step, self.seen = step, 0

    def advance(self, n=1, **info):
        self.seen = info.get("step", self.seen)

    def should_stop(self):
        return self.seen >= self.step


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    from kinject.models.loading import ensure_bundled_model

    return ensure_bundled_model()


@pytest.fixture(scope="session")
def bundled_tokenizer(bundled_model_dir):
    from kinject.models.loading import ResolvedModel, load_tokenizer

    return load_tokenizer(ResolvedModel("bundled", str(bundled_model_dir), "local"))


def build_tiny_llama(folder: Path, tokenizer, seed: int = 0, context: int = 256) -> Path:
    """Save a random 2-layer Llama with the bundled tokenizer and ``context`` positions into ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, bundled_tokenizer) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), bundled_tokenizer)


@pytest.fixture
def tiny_run(request, tmp_path, tiny_model_dir) -> Path:
    """A run folder prepared from the calling module's ``TEXT`` on the tiny random Llama (``TINY_BLOCKS``)."""
    from kinject.corpus.prepare import prepare
    from kinject.settings.sources import InputsConfig
    from kinject.settings.stages import ModelConfig, PrepareConfig

    doc = tmp_path / "doc.txt"
    doc.write_text(request.module.TEXT)
    config = PrepareConfig(
        inputs=InputsConfig(files=[str(doc)]), model=ModelConfig(model=str(tiny_model_dir)), blocks=TINY_BLOCKS
    )
    return prepare(config, tmp_path / "run").run_dir
