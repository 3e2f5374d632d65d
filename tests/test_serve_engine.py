"""The serving engine (``kinject.serving.engine``) loading models while others load or generate: adapters loaded
together each serve their own weights, and a name loaded twice at once is taken once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kinject.serving.errors import ServeError

LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_adapter(folder: Path, base: Path, zero: bool) -> Path:
    """A LoRA adapter of the tiny model ``base`` in ``folder``: random ``lora_B`` weights, so it answers unlike the
    base, or (``zero``) every ``lora_B`` zero, so it answers exactly as the base does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, lora_alpha=8, target_modules=LORA_MODULES)
    )
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.zeros_like(weight) if zero else torch.randn_like(weight))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "A": lora_adapter(root / "trained", tiny_model_dir, zero=False),
        "Z": lora_adapter(root / "zero", tiny_model_dir, zero=True),
    }


@pytest.fixture
def engine(tiny_model_dir):
    from kinject.serving.engine import Engine

    return Engine(str(tiny_model_dir))


def answer(engine, target: str | None) -> list[tuple[int, float]]:
    """The greedy answer of ``target`` (None: the base) to a fixed prompt: each token and its log probability."""
    from kinject.serving.engine import Params

    ids = engine.encode(None, "Amazon EC2 P5 instances have")
    generation = engine.generate(target, ids, Params(max_new_tokens=6))
    return [(t.id, round(t.logprob, 4)) for t in generation.tokens]


def load(engine, kind: str, name: str, path: Path) -> None:
    if kind == "adapter":
        engine.add_adapter(name, path)
    else:
        engine.add_merged(name, path)


def together(engine, loads: list[tuple[str, str, Path]]) -> list[BaseException | None]:
    """Run ``loads`` (kind, name, path) from threads started at once while the model is busy (its compute lock held,
    as a forward pass holds it), then let the model go; each load's error, or None."""
    errors: list[BaseException | None] = [None] * len(loads)

    def run(i: int) -> None:
        try:
            load(engine, *loads[i])
        except BaseException as exc:  # noqa: BLE001 - collected for the test to read
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(loads))]
    with engine._lock:
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # every load has started and waits for the model
    for thread in threads:
        thread.join(120)
    return errors


def test_adapters_loaded_together_each_serve_their_own_weights(engine, adapters, tiny_model_dir):
    from kinject.serving.engine import Engine

    base = answer(engine, None)
    assert together(engine, [("adapter", "A", adapters["A"]), ("adapter", "Z", adapters["Z"])]) == [None, None]
    assert sorted(engine.adapters) == ["A", "Z"]
    alone = Engine(str(tiny_model_dir), {"A": adapters["A"]})  # A loaded by itself, nothing else loading
    assert answer(engine, "A") == answer(alone, "A") != base
    assert answer(engine, "Z") == base  # every lora_B zero: the base's answer
    assert answer(engine, None) == base


@pytest.mark.parametrize(("first", "second"), [("adapter", "adapter"), ("adapter", "merged"), ("merged", "merged")])
def test_a_name_loaded_twice_at_once_is_taken_once(engine, adapters, tiny_model_dir, first, second):
    paths = {"adapter": adapters["A"], "merged": tiny_model_dir}
    errors = together(engine, [(first, "twice", paths[first]), (second, "twice", paths[second])])
    refused = [e for e in errors if e is not None]
    assert len(refused) == 1, errors
    assert isinstance(refused[0], ServeError) and "already loaded" in str(refused[0])
    assert engine.names().count("twice") == 1
    assert answer(engine, "twice")  # the one that was loaded answers
