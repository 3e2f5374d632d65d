"""Training throughput: kinject's training loop against the case study's recipe, same model, data, LoRA shape and
optimizer steps, alternating A/B over repeats in one invocation.

    python bench/train_throughput.py [--model smollm2-135m-instruct] [--block-size 512] [--steps 12] [--repeats 2]
    python bench/train_throughput.py --shape llama-2-13b --layers 4,8 --block-size 2048 --steps 10   # on a GPU

**recipe** is a faithful re-implementation of the case study's script (never used by kinject): transformers'
``Trainer`` with ``default_data_collator`` on fixed blocks, gradient checkpointing, LoRA r64 / alpha 16 / dropout 0.1
on every linear layer, batch 2, lr 2e-4, HF's default schedule and optimizer; nf4 + double quant and bf16 on a GPU.
**kinject** trains the same blocks through ``kinject.training.loop`` (``add_lora``, ``training_arguments``,
``make_trainer``) with the case-study preset's LoRA shape and the recipe's schedule, so only what kinject does
differently for speed differs: its gradient checkpointing decision, its loss (a chunked linear cross-entropy that
never holds the full vocabulary's logits), its collator.

Each trial runs in a fresh process (peak memory is per process): corpus tokens per second (every token of a fixed
block is a corpus token: no padding), seconds per step (median after two warm-up steps), wall time of the steps,
peak memory (RSS on a CPU, ``max_memory_allocated`` on a GPU) and the loss of every step. Prints JSON lines and a
markdown table, and writes both into ``--out``. With ``--layers`` (GPU shapes cut to that many layers) the times at
the full depth are a linear estimate from the cut ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SAMPLES = REPO / "tests" / "data" / "samples" / "aws-summit-nyc-2023"
SHAPES = {
    "smoke": dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=2),  # CPU check
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32),
    "llama-2-13b": dict(hidden_size=5120, intermediate_size=13824, num_attention_heads=40, num_key_value_heads=40),
}
FULL_DEPTH = {"smoke": 4, "llama-2-7b": 32, "llama-2-13b": 40}
RECIPE = dict(lora_r=64, lora_alpha=16, lora_dropout=0.1, batch_size=2, learning_rate=2e-4)
WARMUP_STEPS = 2  # steps left out of the per-step time (allocator and kernel warm-up)


# ------------------------------------------------------------------------------------------------- the data
def corpus_text(corpus: Path | None) -> str:
    """The text trained on: ``corpus`` (a text file), else the sample pages' article text (extracted here)."""
    if corpus is not None:
        return corpus.read_text(encoding="utf-8")
    from kinject.sources.extract import extract_main_text

    texts = [extract_main_text(page.read_text(encoding="utf-8"))[1] for page in sorted(SAMPLES.glob("*.html"))]
    return "\n\n".join(texts)


def make_blocks(model_dir: str, block_size: int, steps: int, out: Path, corpus: Path | None = None) -> int:
    """The corpus's documents (blank-line-separated paragraphs here), tokenized, joined with end-of-text, repeated
    until long enough and cut into fixed blocks (the recipe's ``group_texts``): ``steps`` steps of batch 2."""
    from kinject.models.loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(model_dir))
    ids = tokenizer(corpus_text(corpus))["input_ids"] + [tokenizer.eos_token_id]
    need = steps * RECIPE["batch_size"]
    stream = ids * (need * block_size // len(ids) + 1)  # the six pages hold ~1,200 tokens: fewer than one block
    blocks = [stream[i * block_size : (i + 1) * block_size] for i in range(need)]
    out.write_text(json.dumps(blocks))
    return len(blocks)


# ------------------------------------------------------------------------------------------------- one trial
def trial(
    side: str, model_dir: str, blocks_file: Path, steps: int, four_bit: bool, seed: int, settings: dict[str, str]
) -> dict[str, Any]:
    """Train ``steps`` steps as ``side`` in this process; the measurements."""
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()
    blocks = json.loads(blocks_file.read_text())
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as work:
        if side == "recipe":
            trainer = recipe_trainer(model_dir, blocks, steps, four_bit, seed, Path(work), Clock())
        else:
            trainer = kinject_trainer(model_dir, blocks, steps, four_bit, seed, Path(work), Clock(), settings)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][WARMUP_STEPS - 1 :]
    per_step = statistics.median(gaps) if gaps else wall / steps
    tokens = RECIPE["batch_size"] * len(blocks[0])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    row = {
        "side": side,
        "steps": steps,
        "s_per_step": round(per_step, 4),
        "tokens_per_s": round(tokens / per_step, 1),
        "wall_s": round(wall, 2),
        "final_loss": losses[-1] if losses else None,
        "losses": [round(x, 4) for x in losses],
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gradient_checkpointing": bool(getattr(trainer.model, "is_gradient_checkpointing", False)),
        "dtype": "bf16 autocast" if trainer.args.bf16 else ("4-bit + fp32" if four_bit else "fp32"),
        "settings": settings if side == "kinject" else {},
    }
    if cuda:
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    else:
        row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        row["rss_before_training_mib"] = round(rss_before, 1)
    return row


def recipe_trainer(model_dir: str, blocks: list, steps: int, four_bit: bool, seed: int, work: Path, clock: Any):
    """The case study's script: Trainer, default_data_collator, gradient checkpointing, LoRA on all linear layers."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        BitsAndBytesConfig,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    cuda = torch.cuda.is_available()
    kw: dict[str, Any] = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if four_bit:
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32,
        )
        kw["device_map"] = {"": 0} if cuda else {"": "cpu"}
    elif cuda:
        kw["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    model.config.use_cache = False
    model.gradient_checkpointing_enable()
    if four_bit:
        model = prepare_model_for_kbit_training(model)
    else:
        model.enable_input_require_grads()
    torch.manual_seed(seed)
    lora = LoraConfig(
        r=RECIPE["lora_r"],
        lora_alpha=RECIPE["lora_alpha"],
        lora_dropout=RECIPE["lora_dropout"],
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    data = [{"input_ids": b, "attention_mask": [1] * len(b), "labels": list(b)} for b in blocks]
    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=RECIPE["batch_size"],
        learning_rate=RECIPE["learning_rate"],
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        bf16=cuda,
        use_cpu=not cuda,
        seed=seed,
        data_seed=seed,
        report_to="none",
        disable_tqdm=True,
    )
    return Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator, callbacks=[clock])


def kinject_trainer(
    model_dir: str, blocks: list, steps: int, four_bit: bool, seed: int, work: Path, clock: Any, settings: dict
):
    """The same blocks through kinject's own training functions, with the recipe's LoRA shape and schedule."""
    from transformers import PrinterCallback

    from kinject.models.loading import load_model, load_tokenizer, resolve_model
    from kinject.runtime.progress import Progress
    from kinject.settings.training import TrainConfig
    from kinject.training.loop import add_lora, make_trainer, training_arguments

    config = TrainConfig(
        preset="case-study",
        max_steps=steps,
        seed=seed,
        lr_scheduler="linear",
        warmup_ratio=0.0,
        save_steps=10**6,
        quantization="4bit" if four_bit else "none",
        **RECIPE,
        **settings,
    )
    resolved = resolve_model(model_dir)
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved, quantization="4bit" if four_bit else "none")
    model.config.use_cache = False
    model = add_lora(model, config, four_bit, Progress(), block_tokens=RECIPE["batch_size"] * len(blocks[0]))
    data = [{"input_ids": b, "labels": list(b), "position_ids": list(range(len(b)))} for b in blocks]
    args = training_arguments(work, config, 1.0, steps)
    trainer = make_trainer(model, tokenizer.pad_token_id, data, args, config, False, [clock])
    trainer.remove_callback(PrinterCallback)
    return trainer


# ------------------------------------------------------------------------------------------------- the table
def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per side: medians over repeats, and the mean loss curve."""
    out: dict[str, dict[str, Any]] = {}
    for side in ("kinject", "recipe"):
        mine = [r for r in rows if r["side"] == side]
        if not mine:
            continue
        memory = "peak_memory_gib" if "peak_memory_gib" in mine[0] else "peak_rss_mib"
        curves = [r["losses"] for r in mine]
        out[side] = {
            "repeats": len(mine),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in mine),
            "s_per_step": statistics.median(r["s_per_step"] for r in mine),
            "wall_s": statistics.median(r["wall_s"] for r in mine),
            memory: statistics.median(r[memory] for r in mine),
            "final_loss": statistics.mean(r["final_loss"] for r in mine),
            "curve": [statistics.mean(c[i] for c in curves) for i in range(min(map(len, curves)))],
            "checkpointing": mine[0]["gradient_checkpointing"],
            "dtype": mine[0].get("dtype", ""),
        }
    return out


def table(label: str, s: dict[str, dict[str, Any]]) -> str:
    memory = "peak_memory_gib" if "peak_memory_gib" in next(iter(s.values())) else "peak_rss_mib"
    unit = "GiB" if memory == "peak_memory_gib" else "MiB RSS"
    lines = [
        f"{label}",
        "",
        f"| side | repeats | tokens/s | s/step | wall s | peak {unit} | final loss | gradient checkpointing | dtype |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for side, v in s.items():
        lines.append(
            f"| {side} | {v['repeats']} | {v['tokens_per_s']:.1f} | {v['s_per_step']:.3f} | {v['wall_s']:.1f} | "
            f"{v[memory]:.2f} | {v['final_loss']:.4f} | {'on' if v['checkpointing'] else 'off'} | {v['dtype']} |"
        )
    if {"kinject", "recipe"} <= s.keys():
        k, r = s["kinject"], s["recipe"]
        gap = max(abs(a - b) for a, b in zip(k["curve"], r["curve"], strict=False))
        lines.append(
            f"| kinject / recipe | | {k['tokens_per_s'] / r['tokens_per_s']:.2f}x | | | "
            f"{k[memory] / r[memory]:.2f}x | largest loss gap {gap:.4f} | | |"
        )
    return "\n".join(lines)


def run_depth(args: argparse.Namespace, model_dir: str, blocks_file: Path, label: str, out: Path) -> dict:
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        sides = [s for s in ("kinject", "recipe") if s in args.sides.split(",")]
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            cmd = [sys.executable, __file__, "--child", side, "--model", model_dir, "--blocks", str(blocks_file)]
            cmd += ["--steps", str(args.steps), "--seed", str(args.seed)] + (["--four-bit"] if args.four_bit else [])
            cmd += [f"--set={item}" for item in args.set]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
            if done.returncode or not lines:
                raise SystemExit(f"{side} trial failed ({done.returncode}):\n{done.stderr[-3000:]}")
            row = {**json.loads(lines[-1]), "label": label, "repeat": repeat}
            rows.append(row)
            print(json.dumps(row), flush=True)
            with (out / "train_throughput.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
    return summary(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a model kinject can load (CPU default)")
    ap.add_argument("--shape", choices=sorted(SHAPES), help="random weights of this shape instead (GPU)")
    ap.add_argument("--layers", default="", help="with --shape: depths to time, e.g. 4,8 (default: the full depth)")
    ap.add_argument("--block-size", type=int, default=None, help="default 512 on a CPU, 2048 with --shape")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--sides", default="kinject,recipe", help="which to run (one side alone: no ratios)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a kinject training setting for the kinject side, e.g. gradient_checkpointing=on or cpu_bf16=off",
    )
    ap.add_argument("--four-bit", action="store_true", help="load in 4-bit (nf4 + double quant); default with --shape")
    ap.add_argument("--out", default="bench-out", help="folder for train_throughput.jsonl and .md")
    ap.add_argument("--tokenizer", help="with --shape: a tokenizer folder (default: the bundled model's)")
    ap.add_argument("--corpus", type=Path, help="a text file to train on (default: the sample pages' text)")
    ap.add_argument("--child", choices=["kinject", "recipe"], help=argparse.SUPPRESS)
    ap.add_argument("--blocks", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        settings = dict(item.split("=", 1) for item in args.set)
        row = trial(args.child, args.model, Path(args.blocks), args.steps, args.four_bit, args.seed, settings)
        print(json.dumps(row))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    block = args.block_size or (2048 if args.shape else 512)
    sections = []
    with tempfile.TemporaryDirectory() as work:
        if args.shape:
            from cuda_check import build_llama

            from kinject.models.loading import ensure_bundled_model

            args.four_bit = True
            tokenizer = Path(args.tokenizer) if args.tokenizer else ensure_bundled_model()
            depths = [int(x) for x in args.layers.split(",") if x] or [FULL_DEPTH[args.shape]]
            results = {}
            for depth in depths:
                folder = build_llama(
                    Path(work) / f"{args.shape}-{depth}", tokenizer, num_hidden_layers=depth, **SHAPES[args.shape]
                )
                blocks_file = Path(work) / "blocks.json"
                make_blocks(str(folder), block, args.steps, blocks_file, args.corpus)
                label = f"{args.shape}, {depth} of {FULL_DEPTH[args.shape]} layers, 4-bit, block {block}"
                results[depth] = run_depth(args, str(folder), blocks_file, label, out)
                sections.append(table(label, results[depth]))
                (out / "train_throughput.md").write_text("\n\n".join(sections) + "\n")  # kept if a later depth fails
            if len(depths) >= 2 and FULL_DEPTH[args.shape] not in depths:
                sections.append(estimate(args.shape, results, block))
        else:
            from kinject.models.loading import resolve_model

            model_dir = resolve_model(args.model).path  # the recipe loads a folder, as the case study's script does
            blocks_file = Path(work) / "blocks.json"
            make_blocks(model_dir, block, args.steps, blocks_file, args.corpus)
            label = f"{args.model}, block {block}, batch 2, {args.steps} steps"
            if args.set:
                label += f", kinject with {', '.join(args.set)}"
            sections.append(table(label, run_depth(args, model_dir, blocks_file, label, out)))
    text = "\n\n".join(sections)
    print("\n" + text)
    (out / "train_throughput.md").write_text(text + "\n")
    return 0


def estimate(shape: str, results: dict[int, dict], block: int) -> str:
    """Seconds per step at the full depth, linear in the number of layers from the two smallest cut depths."""
    (d1, r1), (d2, r2) = sorted(results.items())[:2]
    full = FULL_DEPTH[shape]
    lines = [
        f"{shape}, all {full} layers (linear estimate from {d1} and {d2})",
        "",
        "| side | s/step | tokens/s |",
        "|---|---:|---:|",
    ]
    for side in ("kinject", "recipe"):
        a, b = r1[side]["s_per_step"], r2[side]["s_per_step"]
        per_step = a + (b - a) / (d2 - d1) * (full - d1)
        if b <= a:  # the cut depths' times did not grow with depth (a tiny shape, or noise): no estimate
            lines.append(f"| {side} | n/a ({a:.3f} s at {d1} layers, {b:.3f} s at {d2}) | |")
            continue
        lines.append(f"| {side} | {per_step:.3f} | {RECIPE['batch_size'] * block / per_step:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
