"""`ablate`: train and evaluate recipe variants on one run with the same budget, and write one comparison table.

A variant is a '+'-joined list of ingredients: what is packed (``raw``, ``chat`` or ``both`` for the documents,
left out when none is named; ``paraphrase``; ``qa``; ``replay`` or ``replay=0.1`` for its share) and how it is
trained (``kl`` for the soft-target replay loss, ``noguard`` to switch the forgetting guard off). Every variant
trains the same number of optimizer steps from the same settings otherwise, on a copy of the run (its corpus and
generated data, so augmentation is generated once for all), under ``RUN_DIR/ablation/<variant>-seed<N>/``; each is
evaluated with the same probes and decoding.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..runs import RunDir
from ..runtime.progress import Progress
from ..settings.fields import from_dict, to_dict
from ..settings.stages import AugmentConfig, BlocksConfig, ConfigError, EvalConfig, GenerationConfig
from ..settings.training import TrainConfig

DOCUMENT_FORMS = ("raw", "chat", "both")
DEFAULT_REPLAY_SHARE = 0.2


def variant_settings(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(blocks, train) settings of a variant name such as ``raw+qa+replay=0.1+kl``."""
    blocks: dict[str, Any] = {"text_format": "none", "use_paraphrases": False, "use_qa": False, "replay_share": 0.0}
    train: dict[str, Any] = {"replay_loss": "ce"}
    for part in name.split("+"):
        key, _, value = part.strip().partition("=")
        if key in DOCUMENT_FORMS:
            blocks["text_format"] = key
        elif key == "paraphrase":
            blocks["use_paraphrases"] = True
        elif key == "qa":
            blocks["use_qa"] = True
        elif key == "replay":
            try:
                blocks["replay_share"] = float(value) if value else DEFAULT_REPLAY_SHARE
            except ValueError:
                raise ConfigError(f"variant {name!r}: replay share {value!r} is not a number") from None
        elif key == "kl":
            train["replay_loss"] = "kl"
        elif key == "noguard":
            train["guard_checks"] = 0
        else:
            raise ConfigError(
                f"variant {name!r}: unknown ingredient {key!r} (use raw, chat, both, paraphrase, qa, replay[=share], "
                "kl, noguard, joined by '+')"
            )
    if blocks["text_format"] == "none" and not (blocks["use_paraphrases"] or blocks["use_qa"]):
        raise ConfigError(f"variant {name!r}: nothing to train on: add raw, chat, both, paraphrase or qa")
    from_dict(BlocksConfig, {**blocks, "block_size": 512}, "blocks")
    return blocks, train


@dataclass
class AblationRow:
    """One variant and seed: its scores and costs."""

    variant: str
    seed: int
    steps: int
    knowledge_correct: int
    knowledge_scored: int
    knowledge_logprob: float | None
    retention_correct: int
    retention_scored: int
    eos_rate: float | None
    kl: float | None
    ppl_ratio: float | None
    train_s: float
    generation_s: float
    kept_step: int | None = None  # the step whose adapter the forgetting guard kept
    guard: str = ""
    run_dir: str = ""
    notes: list[str] = field(default_factory=list)


def ablate(
    run_dir: str | Path | RunDir,
    variants: list[str],
    seeds: list[int],
    train: TrainConfig,
    blocks: BlocksConfig,
    augment: AugmentConfig,
    evaluation: EvalConfig,
    generation: GenerationConfig,
    progress: Progress | None = None,
    reuse: bool = True,
) -> dict[str, Any]:
    """Train and evaluate each variant with each seed for the same number of optimizer steps; write the table.

    ``blocks`` gives the block size and padding (the variant decides what is packed); ``train.max_steps`` is the
    budget (unset: the steps of the first variant at ``train.epochs``, the same for all). With ``reuse``, a variant
    and seed already trained and evaluated with exactly these settings on this corpus (an interrupted or extended
    ablation) is read back instead of trained again.
    """
    from ..augment import ensure_augmentation
    from ..corpus.blocks import augmentation_kinds
    from ..eval import evaluate
    from .pipeline import train as train_run

    run = RunDir(run_dir).require()
    progress = progress or Progress()
    if not variants or not seeds:
        raise ConfigError("ablate needs at least one variant and one seed")
    settings = {v: variant_settings(v) for v in variants}
    kinds = sorted({k for b, _ in settings.values() for k in augmentation_kinds(from_dict(BlocksConfig, b))})
    augmentation = ensure_augmentation(run, augment, tuple(kinds), progress) if kinds else None
    budget = train.max_steps
    rows: list[AblationRow] = []
    data: dict[str, Any] = {}
    for variant in variants:
        block_values, train_values = settings[variant]
        variant_blocks = replace(blocks, **block_values)
        used = augmentation_kinds(variant_blocks)
        gen_s = sum(augmentation.seconds.get(k, 0.0) for k in used) if augmentation else 0.0
        for seed in seeds:
            sub = RunDir(run.ablation_dir / f"{_slug(variant)}-seed{seed}")
            config = replace(train, **train_values, seed=seed, max_steps=budget, eval_at_end=False)
            wanted = {
                "train": config,
                "blocks": variant_blocks,
                "augment": augment,
                "eval": evaluation,
                "generation": generation,
            }
            report = _finished(run, sub, wanted) if reuse else None
            if report is not None:
                progress.log(f"ablation: {variant}, seed {seed}: reusing the finished run in {sub.path}")
            else:
                progress.log(f"ablation: {variant}, seed {seed}")
                _copy_run(run, sub.path)
                train_run(sub, config, progress, blocks=variant_blocks, augment=augment)
                evaluate(sub, evaluation, progress, generation)
                report = sub.read_eval()
            meta = sub.read_adapter_meta()
            if budget is None:  # the first variant's steps become everyone's budget
                budget = meta["total_steps"]
            rows.append(_row(variant, seed, sub, report, meta, gen_s, config))
            data = _table(run, rows, budget, train, blocks, evaluation, generation, variants, seeds, report["base"])
            run.write_ablation(data, format_ablation(data))  # after every variant: a failure later loses none
    return data


def _table(
    run: RunDir,
    rows: list[AblationRow],
    budget: int | None,
    train: TrainConfig,
    blocks: BlocksConfig,
    evaluation: EvalConfig,
    generation: GenerationConfig,
    variants: list[str],
    seeds: list[int],
    base: dict[str, Any],
) -> dict[str, Any]:
    return {
        "run_dir": str(run),
        "budget_steps": budget,
        "settings": {
            "learning_rate": train.learning_rate,
            "lora_r": train.lora_r,
            "lora_alpha": train.lora_alpha,
            "block_size": blocks.block_size,
            "batch_size": train.batch_size,
            "guard": f"{train.guard_checks} checks, KL <= {train.guard_kl_max:g}" if train.guard_checks else "off",
            "generation": {"max_new_tokens": generation.max_new_tokens, "temperature": generation.temperature},
            "probes": evaluation.probes or f"{evaluation.auto_probes} automatic",
        },
        "seeds": seeds,
        "variants": variants,
        "base": {
            k: base[k]
            for k in (
                "knowledge_correct",
                "knowledge_scored",
                "knowledge_logprob",
                "retention_correct",
                "retention_scored",
                "eos_rate",
            )
        },
        "rows": [r.__dict__ for r in rows],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _comparable(section: str, values: dict[str, Any]) -> dict[str, Any]:
    values = json.loads(json.dumps(values, default=str))
    if section == "train":
        values.pop("eval_at_end", None)
        if values.get("max_steps") is not None:
            values.pop("epochs", None)  # no effect when the step budget is set
    return values


def _finished(run: RunDir, sub: RunDir, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """``sub``'s evaluation (eval.json) when it finished training and evaluation with the ``wanted`` settings (one
    dataclass per config section) on ``run``'s sources; else None."""
    if not (sub.is_run() and sub.has_adapter()):
        return None
    try:
        report, meta, config = sub.read_eval(), sub.read_adapter_meta(), sub.read_config()
        if not report or meta.get("status") != "done" or sub.read_sources() != run.read_sources():
            return None
        for section, value in wanted.items():
            if _comparable(section, config.get(section) or {}) != _comparable(section, to_dict(value)):
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = report.get("has_adapter") and report["settings"].get("adapter_step") == meta.get("step")
    return report if ok else None


def _train_seconds(sub: RunDir) -> float:
    """Wall time from the first to the last optimizer step (guard checks included, model loading not), from the
    run's metrics: the same measure for a variant trained now and one read back."""
    times = [m["time"] for m in sub.read_metrics() if "time" in m and "loss" in m]
    if len(times) < 2:
        return 0.0
    return (times[-1] - times[0]) * len(times) / (len(times) - 1)


def _row(
    variant: str,
    seed: int,
    sub: RunDir,
    report: dict[str, Any],
    meta: dict[str, Any],
    gen_s: float,
    config: TrainConfig,
) -> AblationRow:
    guard, scores, forgetting = meta.get("guard") or {}, report["adapter"], report.get("forgetting") or {}
    return AblationRow(
        variant=variant,
        seed=seed,
        steps=meta["step"],
        knowledge_correct=scores["knowledge_correct"],
        knowledge_scored=scores["knowledge_scored"],
        knowledge_logprob=scores.get("knowledge_logprob"),
        retention_correct=scores["retention_correct"],
        retention_scored=scores["retention_scored"],
        eos_rate=scores.get("eos_rate"),
        kl=forgetting.get("kl_mean"),
        ppl_ratio=forgetting.get("ppl_ratio"),
        train_s=round(_train_seconds(sub), 1),
        generation_s=round(gen_s, 1),
        kept_step=meta.get("kept_step"),
        guard=f"{config.guard_checks} checks" if config.guard_checks else "off",
        run_dir=str(sub),
        notes=[guard["reason"]] if guard.get("reason") else [],
    )


def _slug(variant: str) -> str:
    return variant.replace("+", "_").replace("=", "")


def _copy_run(run: RunDir, target: Path) -> RunDir:
    """A fresh run folder with ``run``'s settings, sources, corpus and generated data (nothing trained)."""
    if target.exists():
        shutil.rmtree(target)
    return run.copy_inputs(target)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def format_ablation(data: dict[str, Any]) -> str:
    """The ablation table as markdown: one line per variant (seeds pooled: correct answers summed, means)."""
    s = data.get("settings", {})
    lines = [
        f"Budget: {data['budget_steps']} optimizer steps per variant; seeds {', '.join(map(str, data['seeds']))}. "
        + (
            f"lr {s['learning_rate']:g}, LoRA r{s['lora_r']}/alpha {s['lora_alpha']}, blocks of {s['block_size']} "
            f"x {s['batch_size']}, guard {s['guard']}; probes: {s['probes']}, answers of at most "
            f"{s['generation']['max_new_tokens']} tokens."
            if s
            else ""
        ),
        "",
        "| variant | knowledge | knowledge log-prob | retention | eos rate | KL | ppl ratio | adapter kept at step "
        "| train s | gen. s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    b = data["base"]
    lines.append(
        f"| (base model) | {b['knowledge_correct']}/{b['knowledge_scored']} | {_fmt(b['knowledge_logprob'])} "
        f"| {b['retention_correct']}/{b['retention_scored']} | {_fmt(b['eos_rate'], 2)} | 0 | 1 | | | |"
    )

    def mean(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return sum(values) / len(values) if values else None

    for variant in data["variants"]:
        rows = [r for r in data["rows"] if r["variant"] == variant]
        if not rows:
            continue
        know = f"{sum(r['knowledge_correct'] for r in rows)}/{sum(r['knowledge_scored'] for r in rows)}"
        ret = f"{sum(r['retention_correct'] for r in rows)}/{sum(r['retention_scored'] for r in rows)}"
        per_seed = "/".join(str(r["knowledge_correct"]) for r in rows)
        kept = "/".join("no guard" if r.get("guard") == "off" else str(r.get("kept_step") or r["steps"]) for r in rows)
        lines.append(
            f"| {variant} | {know} ({per_seed}) | {_fmt(mean(rows, 'knowledge_logprob'))} | {ret} "
            f"| {_fmt(mean(rows, 'eos_rate'), 2)} | {_fmt(mean(rows, 'kl'))} | {_fmt(mean(rows, 'ppl_ratio'))} "
            f"| {kept} | {mean(rows, 'train_s'):.0f} | {mean(rows, 'generation_s'):.0f} |"
        )
    lines += [
        "",
        "Knowledge and retention: correct answers over all seeds (per seed in parentheses); the other columns are "
        "means over seeds. KL: KL(base || adapter) per token on the evaluation's general prompts; ppl ratio: "
        "adapter / base perplexity on general text. Adapter kept at step: per seed, the step the forgetting guard "
        "kept (the last one when no check stayed within its bound). Train: wall seconds from the first to the last "
        "optimizer step, guard checks included. Generation: seconds spent generating the augmentation the variant "
        "trains on (generated once, shared by the variants). Replay is trained with cross-entropy unless the "
        "variant names kl.",
    ]
    return "\n".join(lines) + "\n"
