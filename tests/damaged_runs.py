"""Run folders with one damaged file each, as a crash, a full disk or a hand edit leaves them: files that parse but
hold the wrong shape or type, and a cut-off one. Shared by the tests of the readers, the views and the handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kinject.runs import RunDir


@dataclass(frozen=True)
class Damage:
    """One damaged file: its name in the run, what it holds, and the field and fault a message must name."""

    file: str
    content: str
    named: str  # what the message says after the file's name: the field, and what is wrong with it

    def apply(self, run: RunDir) -> None:
        (run.path / self.file).write_text(self.content, encoding="utf-8")


DAMAGES = {
    "status is text": Damage("status.json", '"done"', "the file must be an object, got 'done'"),
    "status is a list": Damage("status.json", "[]", "the file must be an object, got a list"),
    "eval is a list": Damage("eval.json", "[1, 2]", "the file must be an object, got a list"),
    "eval score is text": Damage(
        "eval.json", '{"base": {"knowledge_accuracy": "high"}}', "base.knowledge_accuracy must be a number, got 'high'"
    ),
    "eval probe answer is a list": Damage(
        "eval.json", '{"base": {}, "probes": [{"id": "k1", "adapter": [1]}]}', "probes[0].adapter must be an object"
    ),
    "eval forgetting is text": Damage(
        "eval.json", '{"base": {}, "forgetting": {"kl_mean": "low"}}', "forgetting.kl_mean must be a number"
    ),
    "eval is cut off": Damage("eval.json", '{"base": {"knowledge_acc', "the file is not valid JSON"),
    "config model is a list": Damage("config.yaml", "model: [1]\n", "section 'model' must be a mapping, got a list"),
    "config value of the wrong type": Damage(
        "config.yaml", "model: {model: tiny}\ntrain: {lora_r: many}\n", "train: lora_r must be an integer"
    ),
    "metrics step is text": Damage("metrics.jsonl", '{"step": "x", "loss": 1.0}\n', "line 1: step must be a whole"),
    "metrics loss is text": Damage("metrics.jsonl", '{"step": 1, "loss": "low"}\n', "line 1: loss must be a number"),
}


def make_run(root: Path, name: str, adapter: bool = True) -> RunDir:
    """A run prepared with the "tiny" model, with an adapter (its config is enough for the card) by default."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    run.write_config({"model": {"model": "tiny"}})
    if adapter:
        run.adapter_dir.mkdir()
        (run.adapter_dir / run.ADAPTER_CONFIG).write_text("{}")
    return run


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
