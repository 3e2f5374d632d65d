"""Load a run's base model (with or without its adapter) and answer chat questions.

Shared by `kinject ask`, evaluation and the embedded chat server, so every answer uses the same chat template
and decoding settings (TGI's defaults in the case study: max_new_tokens 200, top_p 0.9, temperature 0.01, which is
greedy for practical purposes, so we decode greedily at or below 0.05 and results are reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import GenerationConfig, ModelConfig, from_dict
from .models import load_model, load_tokenizer, resolve_model
from .progress import Progress
from .runs import RunDir


@dataclass
class Loaded:
    """A model ready to generate: the base, optionally wrapped by a PeftModel with the run's adapter."""

    model: Any
    tokenizer: Any
    has_adapter: bool
    model_name: str

    def adapter_disabled(self):
        """Context manager: answer as the base model (the adapter's weights switched off)."""
        import contextlib

        return self.model.disable_adapter() if self.has_adapter else contextlib.nullcontext()


def load_for_run(run_dir: str | Path | RunDir, with_adapter: bool = True, progress: Progress | None = None) -> Loaded:
    """The run's base model, with its adapter attached when ``with_adapter``.

    A missing adapter is reported before the model is loaded (seconds to minutes), not after.
    """
    run = RunDir(run_dir).require()
    adapter = run.require_adapter() if with_adapter else None
    cfg = from_dict(ModelConfig, run.section("model"), "model")
    resolved = resolve_model(cfg.model, cfg.revision, progress)
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return Loaded(model, tokenizer, adapter is not None, cfg.model)


def chat_input_ids(tokenizer: Any, messages: list[dict[str, str]]):
    """Token ids of a conversation ending in the assistant's turn (plain text when there is no template)."""
    if getattr(tokenizer, "chat_template", None):
        enc = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return enc["input_ids"]
    text = "\n".join(m["content"] for m in messages) + "\n"
    return tokenizer(text, return_tensors="pt")["input_ids"]


def generate_ids(model: Any, tokenizer: Any, input_ids: Any, config: GenerationConfig) -> tuple[list[int], bool]:
    """Generate a continuation; returns (new token ids, whether it ended with EOS within the limit)."""
    import torch

    kw: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "repetition_penalty": config.repetition_penalty,
    }
    if config.greedy:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kw.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=None)
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kw)
    new = out[0, input_ids.shape[1] :].tolist()
    ended = tokenizer.eos_token_id in new
    if ended:
        new = new[: new.index(tokenizer.eos_token_id)]
    return new, ended


def answer(loaded: Loaded, question: str, config: GenerationConfig | None = None, base: bool = False) -> str:
    """One chat answer from the adapter (or, with ``base``, from the base model)."""
    config = config or GenerationConfig()
    ids = chat_input_ids(loaded.tokenizer, [{"role": "user", "content": question}])
    if base:
        with loaded.adapter_disabled():
            new, _ = generate_ids(loaded.model, loaded.tokenizer, ids, config)
    else:
        new, _ = generate_ids(loaded.model, loaded.tokenizer, ids, config)
    return loaded.tokenizer.decode(new, skip_special_tokens=True).strip()
