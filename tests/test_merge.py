"""The merge of a run's adapter into a 16-bit copy of its base (``kinject.sharing.merge``): a loadable model that
answers as the base with the adapter, made only while no training holds the run."""

from __future__ import annotations

import pytest
import torch
from damaged_runs import fake_run
from test_train import TEXT, fit, quick  # noqa: F401 - TEXT: the text tiny_run prepares

from kinject.runs import RunBusyError, RunDir


def test_merge_holds_the_runs_lock(tmp_path, monkeypatch):
    import kinject.sharing.merge
    from kinject.sharing.merge import merge

    run = fake_run(tmp_path / "run")
    monkeypatch.setattr(kinject.sharing.merge, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with run.training_lock(), pytest.raises(RunBusyError, match="being trained"):
        merge(run)


def test_merge_writes_a_loadable_16bit_model(tiny_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kinject.sharing.merge import merge

    fit(tiny_run, quick(max_steps=3))
    merged_dir = merge(tiny_run)
    assert list(merged_dir.glob("*.safetensors")) and (merged_dir / "tokenizer.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert merged.dtype == torch.bfloat16
    assert not any("lora" in k for k in merged.state_dict())
    run = RunDir(tiny_run)
    base = AutoModelForCausalLM.from_pretrained(run.section("model")["model"], dtype=torch.bfloat16)
    with_adapter = PeftModel.from_pretrained(base, str(run.adapter_dir)).eval()
    ids = torch.tensor([[1, 42, 7, 99, 5]])
    with torch.no_grad():
        expected = with_adapter(ids).logits.float()
        got = merged(ids).logits.float()
    assert torch.allclose(got, expected, atol=0.05), (got - expected).abs().max()
    assert not [p for p in tiny_run.iterdir() if p.name.startswith(".merged")]  # no temporary folder left
