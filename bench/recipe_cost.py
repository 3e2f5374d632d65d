"""What a recipe costs on a GPU: augmentation generation, training steps and forgetting-guard checks, on random-weight
Llama shapes built from a config (no download), and a functional check of the recipe's CUDA path.

    python bench/recipe_cost.py --tokenizer DIR [--preset knowledge] [--shape llama-2-13b] [--layers 4,8]
                                [--out results.json]

For each depth in ``--layers`` the shape is cut to that many layers, loaded in 4-bit as training loads it, and timed:
the augmentation of the six sample pages with that model as the generator (paraphrases, questions, replay; random
weights never end a turn, so every answer runs to its token limit and the times are upper bounds), training steps of
the preset's block size and batch, and one guard check. Times at the full depth are extrapolated linearly from the
cut ones (an estimate, and labelled so). ``recipe`` first trains a small model through the whole recipe on CUDA
(augmentation, question-answer blocks, replay with the soft-target KL loss, the forgetting guard) and checks it ran.
Prints JSON lines and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cuda_check import SMALL, build_llama  # noqa: E402

from kinject.runs import RunDir  # noqa: E402
from kinject.runtime.progress import Progress  # noqa: E402
from kinject.settings.presets import DEFAULT_PRESET  # noqa: E402
from kinject.settings.resolve import training_blocks  # noqa: E402
from kinject.settings.sources import InputsConfig  # noqa: E402
from kinject.settings.stages import AugmentConfig, BlocksConfig, ModelConfig, PrepareConfig  # noqa: E402
from kinject.settings.training import TrainConfig  # noqa: E402

SAMPLES = REPO / "tests" / "data" / "samples" / "aws-summit-nyc-2023"
SHAPES = {
    "smoke": dict(hidden_size=256, intermediate_size=688, num_attention_heads=4, num_key_value_heads=2),
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32),
    "llama-2-13b": dict(hidden_size=5120, intermediate_size=13824, num_attention_heads=40, num_key_value_heads=40),
}
FULL_DEPTH = {"smoke": 8, "llama-2-7b": 32, "llama-2-13b": 40}
RESULTS: list[dict[str, Any]] = []


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def emit(row: dict[str, Any], out: Path | None) -> None:
    RESULTS.append(row)
    print(json.dumps(row, default=str), flush=True)
    if out is not None:
        out.write_text(json.dumps(RESULTS, indent=2, default=str))


def prepare_sample(model_dir: Path, run_dir: Path, block_size: int) -> RunDir:
    from kinject.corpus.prepare import prepare

    files = sorted(str(p) for p in SAMPLES.glob("*.html")) or sorted(str(p) for p in SAMPLES.glob("*.md"))
    config = PrepareConfig(
        inputs=InputsConfig(files=files),
        model=ModelConfig(model=str(model_dir)),
        blocks=BlocksConfig(block_size=block_size),
    )
    return RunDir(prepare(config, run_dir).run_dir)


def check_recipe(small: Path, work: Path, preset: str, out: Path | None) -> None:
    """The whole recipe on CUDA (the CPU with --smoke) with a small random model: it must train, guard and save."""
    import kinject.augment.verb as augment
    from kinject.training.pipeline import train

    run = prepare_sample(small, work / "recipe", 256)
    real_replay = augment.generate_replay

    def replay_that_ends(base, config, progress):  # random weights never end a turn; give the replay an end
        rows = real_replay(base, config, progress)
        return [{**r, "answer": r["answer"][:200] or "Fine.", "ended": True, "kept": True} for r in rows]

    augment.generate_replay = replay_that_ends
    try:
        blocks = training_blocks(None, preset, {"block_size": 256, "replay_share": 0.2, "use_qa": True})
        config = TrainConfig(preset=preset, max_steps=12, replay_loss="kl", guard_checks=3, guard_kl_max=10.0)
        started = time.time()
        result = train(run, config, Progress(), blocks=blocks, augment=AugmentConfig(replay_prompts=8))
    finally:
        augment.generate_replay = real_replay
    meta = run.read_adapter_meta()
    infos = run.blocks_infos()
    ok = (
        result.status == "done"
        and result.step == 12
        and len(meta.get("guard", {}).get("checks", [])) == 3
        and result.final_loss is not None
        and result.final_loss == result.final_loss  # not NaN
        and infos[0]["stats"]["replay_tokens"] > 0
    )
    emit(
        {
            "check": "recipe",
            "ok": ok,
            "steps": result.step,
            "final_loss": result.final_loss,
            "kept_step": result.kept_step,
            "guard": result.note,
            "replay_tokens": infos[0]["stats"]["replay_tokens"],
            "seconds": round(time.time() - started, 1),
        },
        out,
    )


def time_depth(shape: str, layers: int, tokenizer: Path, work: Path, preset: str, out: Path | None) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from kinject.augment import (
        LocalGenerator,
        ensure_augmentation,
        generate_paraphrases,
        generate_replay,
        split_passages,
    )
    from kinject.models.loading import ResolvedModel, load_model, load_tokenizer
    from kinject.training.guard import ForgettingGuard, knowledge_items
    from kinject.training.pipeline import train

    model_dir = build_llama(work / f"{shape}-{layers}", tokenizer, **SHAPES[shape], num_hidden_layers=layers)
    train_cfg = TrainConfig(preset=preset, save_steps=10_000, guard_checks=0)
    blocks = training_blocks(None, preset)
    run = prepare_sample(model_dir, work / f"run-{shape}-{layers}", blocks.block_size)
    documents = run.load_corpus().to_list()
    passages = split_passages(documents)
    resolved = ResolvedModel(shape, str(model_dir), "local")
    tok = load_tokenizer(resolved)
    model = load_model(resolved, quantization="4bit" if torch.cuda.is_available() else "none").eval()
    config = AugmentConfig()
    gen = LocalGenerator(model, tok, config.augment_batch_size)
    row: dict[str, Any] = {"shape": shape, "layers": layers, "preset": preset}
    # Warm-up: CUDA and bitsandbytes load their kernels on first use. On an H200 this was not enough: the first
    # model timed in a process still generated slower than a deeper one timed after it; read the later depths.
    gen.chat([[{"role": "user", "content": "Hello"}]] * 2, 8, 0.0, 0)
    for kind in ("paraphrase", "qa", "replay"):
        sync()
        t0 = time.time()
        if kind == "paraphrase":
            rows = generate_paraphrases(passages, gen, config, Progress())
        elif kind == "qa":  # saved in the run: the training below packs these question-answer pairs
            rows = ensure_augmentation(run, config, ("qa",), Progress(), base=gen).rows["qa"]
        else:
            rows = generate_replay(gen, config, Progress())
        sync()
        row[f"{kind}_s"] = round(time.time() - t0, 2)
        row[f"{kind}_rows"] = len(rows)
    peft = get_peft_model(
        model, LoraConfig(r=train_cfg.lora_r, lora_alpha=train_cfg.lora_alpha, target_modules="all-linear")
    )
    t0 = time.time()
    guard = ForgettingGuard(peft, tok, knowledge_items(documents), 0.1, [1])
    row["guard_setup_s"] = round(time.time() - t0, 2)
    t0 = time.time()
    guard.measure()
    row["guard_check_s"] = round(time.time() - t0, 2)
    del guard, peft, model, gen
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    times: list[float] = []

    class Timer(Progress):
        def advance(self, n: int = 1, **info: Any) -> None:
            if "step" in info:
                sync()
                times.append(time.time())

    steps = 8
    qa_blocks = BlocksConfig(**{**blocks.__dict__, "use_qa": True})  # enough blocks for full batches
    train(run, TrainConfig(**{**train_cfg.__dict__, "max_steps": steps}), Timer(), blocks=qa_blocks, augment=config)
    row["s_per_step"] = round((times[-1] - times[1]) / (len(times) - 2), 3)
    row["tokens_per_step"] = train_cfg.batch_size * blocks.block_size
    row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0
    emit(row, out)
    return row


def extrapolate(rows: list[dict], shape: str, out: Path | None) -> dict:
    """Linear in depth through the two measured depths, to the shape's full depth."""
    (a, b) = sorted(rows, key=lambda r: r["layers"])[:2]
    full = FULL_DEPTH[shape]
    est: dict[str, Any] = {"shape": shape, "layers": full, "estimate": True}
    for key in ("paraphrase_s", "qa_s", "replay_s", "guard_setup_s", "guard_check_s", "s_per_step", "peak_memory_gib"):
        slope = (b[key] - a[key]) / (b["layers"] - a["layers"])
        est[key] = round(a[key] + slope * (full - a["layers"]), 2)
    emit(est, out)
    return est


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="Tokenizer folder (the bundled model's).")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--shape", default="llama-2-13b", choices=list(SHAPES))
    parser.add_argument("--layers", default="4,8")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="Check the script itself on the CPU (tiny shapes).")
    parser.add_argument("--skip-recipe", action="store_true", help="Only time the shapes (no recipe check).")
    parser.add_argument(
        "--samples", type=Path, help="Folder of the sample pages as .html or .md (default: the tests' copies)."
    )
    args = parser.parse_args()
    if args.samples:
        global SAMPLES
        SAMPLES = args.samples
    if args.smoke:
        args.shape, args.layers = "smoke", "2,4"
    elif not torch.cuda.is_available():
        print(json.dumps({"error": f"torch {torch.__version__} sees no CUDA device"}))
        return 1
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(json.dumps({"torch": torch.__version__, "gpu": gpu}), flush=True)
    work = Path(tempfile.mkdtemp(prefix="kinject-recipe-"))
    small = build_llama(work / "small", args.tokenizer, **SMALL)
    if not args.skip_recipe:
        check_recipe(small, work, args.preset, args.out)
    rows = [
        time_depth(args.shape, int(n), args.tokenizer, work, args.preset, args.out) for n in args.layers.split(",")
    ]
    est = [extrapolate(rows, args.shape, args.out)] if len({r["layers"] for r in rows}) >= 2 else []
    print("\n| layers | paraphrases s | questions s | replay s | guard check s | s/step | peak GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in [*rows, *est]:
        label = f"{r['layers']} (estimate)" if r.get("estimate") else str(r["layers"])
        print(
            f"| {label} | {r['paraphrase_s']} | {r['qa_s']} | {r['replay_s']} | {r['guard_check_s']} "
            f"| {r['s_per_step']} | {r['peak_memory_gib']} |"
        )
    return 0 if args.skip_recipe or RESULTS[0].get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
