"""A run's base model loaded with or without its adapter, and the answers it gives.

Every answer kinject generates, here (``kinject ask``, the app's Ask tab, evaluation, the forgetting guard,
augmentation) and in the server, picks its tokens with the one decoder (``kinject.models.sequences`` and
``kinject.models.batch``), with the same chat template and decoding settings (TGI's defaults in the case study:
max_new_tokens 200, top_p 0.9, temperature 0.01, which is greedy for practical purposes, so we decode greedily at or
below 0.05 and results are reproducible).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import RunDir
from ..runtime.progress import Progress
from ..settings.fields import from_dict
from ..settings.stages import GenerationConfig, ModelConfig
from .batch import decode, prefix_key
from .loading import BUILD_LOCK, load_model, load_tokenizer, resolve_model
from .sequences import Params


@dataclass
class Loaded:
    """A model ready to generate: the base, optionally wrapped by a PeftModel with the run's adapter."""

    model: Any
    tokenizer: Any
    has_adapter: bool
    model_name: str


def adapter_off(model: Any) -> Any:
    """Context manager: ``model`` answers as its base (a PeftModel's adapter switched off; any other model is its own
    base). The evaluation's base side and the forgetting guard's base both come from it."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()


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

        with BUILD_LOCK:
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


def generate_ids(
    model: Any, tokenizer: Any, input_ids: Any, config: GenerationConfig, seed: int | None = None
) -> tuple[list[int], bool]:
    """Generate a continuation of one prompt (a 1-row id tensor); returns (new token ids, whether it ended with EOS
    within the limit). Sampling, when ``config`` asks for it, draws with ``seed``."""
    return generate_padded(model, tokenizer, [input_ids[0].tolist()], config, [seed])[0]


def answer(loaded: Loaded, question: str, config: GenerationConfig | None = None, base: bool = False) -> str:
    """One chat answer from the adapter (or, with ``base``, from the base model)."""
    config = config or GenerationConfig()
    ids = chat_input_ids(loaded.tokenizer, [{"role": "user", "content": question}])
    with adapter_off(loaded.model) if base else contextlib.nullcontext():
        new, _ = generate_ids(loaded.model, loaded.tokenizer, ids, config)
    return loaded.tokenizer.decode(new, skip_special_tokens=True).strip()


EMPTY_ANSWER = "(empty answer: the model ended its turn without any text)"


def shown_answer(text: str) -> str:
    """An answer as a person should see it: stripped, and never a blank box that looks like nothing happened."""
    return text.strip() or EMPTY_ANSWER


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation ending in the assistant's turn, as a plain list."""
    return chat_input_ids(tokenizer, messages)[0].tolist()


BATCH_TOKENS = 16384  # most prompt-plus-answer tokens generated together (long open-book prompts go fewer at once)


def batches(
    inputs: list[list[int]], batch_size: int, extra: int = 0, max_tokens: int = BATCH_TOKENS
) -> list[list[int]]:
    """Indices of ``inputs`` in batches: similar lengths together (less padding), prompts that open alike (one
    ``batch.prefix_key``) in one batch where they fit (the decoder runs their prefix once: the round trip's questions
    about one passage), at most ``batch_size`` a batch and at most ``max_tokens`` padded tokens (longest prompt plus
    ``extra`` new tokens, times the rows)."""
    by_prefix: dict[Any, list[int]] = {}
    for i, ids in enumerate(inputs):
        key = prefix_key(ids)
        by_prefix.setdefault(i if key is None else key, []).append(i)
    groups = sorted(  # each group's rows by length, the groups by their shortest prompt
        (sorted(rows, key=lambda i: len(inputs[i])) for rows in by_prefix.values()), key=lambda r: len(inputs[r[0]])
    )

    def fits(rows: list[int]) -> bool:
        return len(rows) <= batch_size and len(rows) * (max(len(inputs[i]) for i in rows) + extra) <= max_tokens

    out: list[list[int]] = []
    for rows in groups:
        if out and len(rows) > 1 and fits(rows) and not fits(out[-1] + rows):
            out.append([])  # the group fits a batch of its own but not what is left of this one
        for i in rows:
            if out and fits(out[-1] + [i]):
                out[-1].append(i)
            else:
                out.append([i])
    return out


def generate_padded(
    model: Any,
    tokenizer: Any,
    inputs: list[list[int]],
    config: GenerationConfig,
    seeds: list[int | None] | None = None,
) -> list[tuple[list[int], bool]]:
    """Continue ``inputs`` together in one batch of the one decoder (``kinject.models.batch.decode``, the server's
    too); per input the new ids up to EOS and whether it ended. Sampling, when ``config`` asks for it, draws each
    input with its own seed (``seeds``), so an answer does not depend on the batch it was in.

    Under greedy decoding each row's answer is the one it gets alone (the mask hides the padding, positions start
    at each row's first real token); tests compare the two."""
    base = Params.from_generation(config)
    seeds = seeds or [None] * len(inputs)
    params = [dataclasses.replace(base, seed=seed) for seed in seeds]
    eos = tokenizer.eos_token_id
    results = []
    for seq in decode(model, tokenizer, inputs, params):
        ids = [t.id for t in seq.tokens]
        ended = seq.finish == "eos_token"
        results.append((ids[: ids.index(eos)] if ended else ids, ended))
    return results


def generate_batch(
    model: Any,
    tokenizer: Any,
    inputs: list[list[int]],
    config: GenerationConfig,
    batch_size: int = 16,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[tuple[list[int], bool]]:
    """Continue many token lists at once (batches of similar lengths); per input the new ids up to EOS and whether
    it ended. Sampling, when ``config`` asks for it, draws input ``i`` with ``seed + i``."""
    progress = progress or Progress()
    results: list[tuple[list[int], bool]] = [([], False)] * len(inputs)
    for chunk in batches(inputs, batch_size, config.max_new_tokens):
        if progress.should_stop():
            raise InterruptedError("generation stopped by the user")
        answers = generate_padded(model, tokenizer, [inputs[i] for i in chunk], config, [seed + i for i in chunk])
        for i, result in zip(chunk, answers, strict=True):
            results[i] = result
        progress.advance(len(chunk))
    return results
