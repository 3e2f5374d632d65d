"""GPU check and benchmark of the QLoRA training path, on random-weight Llamas built from a config.

CI has no GPU, so the CUDA-only parts of ``kinject.training.loop`` (4-bit nf4 loading, bf16 compute, k-bit preparation,
gradient checkpointing, out-of-memory handling, merging a 4-bit-trained adapter) are checked here, on any CUDA
machine, with no download: the models are random Llamas built from a config and saved next to a tokenizer.

    python bench/cuda_check.py --require-cuda [--tokenizer DIR] [--out results.json] [--bench]

Checks (each a line of JSON; the script exits 1 when one fails):
  qlora      the default (auto) quantization loads nf4 + double quant Linear4bit layers with bf16 compute and
             gradient checkpointing; loss falls; LoRA weights change, the 4-bit base weights do not
  masking    a packed document's logits (no attention mask, restarting position ids) equal the document alone
  stop       the job runner's stop saves an adapter at the step reached; resume continues to the end
  oom        a real CUDA out-of-memory ends the job failed with the advice message, frees the GPU memory, and the
             next job in the same process finishes
  merge      merged/ (16-bit base + the 4-bit-trained adapter) gives the logits of base + adapter
``--bench`` adds throughput and peak memory of the case-study recipe (r64, alpha 16, batch 2, 2048-token blocks,
4-bit) on a TinyLlama-1.1B-shaped model and on Llama-2-13b-shaped models cut to a few layers, from which the full
40 layers are extrapolated linearly (an estimate, and labelled so).
Without CUDA it runs the checks it can on the CPU (4-bit through bitsandbytes' CPU path), as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kinject import runs  # noqa: E402
from kinject.runs import RunDir  # noqa: E402
from kinject.runtime.progress import Progress  # noqa: E402
from kinject.settings.places import SHIPPED  # noqa: E402
from kinject.settings.sources import InputsConfig  # noqa: E402
from kinject.settings.stages import BlocksConfig, ModelConfig, PrepareConfig  # noqa: E402
from kinject.settings.training import TrainConfig  # noqa: E402

RESULTS: dict[str, Any] = {}
CORPUS = SHIPPED / "general_text.txt"


def record(name: str, ok: bool, out: Path | None, **numbers: Any) -> None:
    RESULTS[name] = {"ok": ok, **numbers}
    print(json.dumps({"check": name, "ok": ok, **numbers}, default=str), flush=True)
    if out is not None:
        runs.atomic_write_json(out, RESULTS)


# The small random Llama the functional checks train (bench/recipe_cost.py uses it too).
SMALL = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2)


def build_llama(folder: Path, tokenizer_dir: Path, **shape: Any) -> Path:
    """A random Llama of ``shape`` saved in bf16 beside the tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        max_position_embeddings=4096,
        **shape,
    )
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def prepare_run(model_dir: Path, run_dir: Path, block_size: int) -> Path:
    from kinject.corpus.prepare import prepare

    config = PrepareConfig(
        inputs=InputsConfig(files=[str(CORPUS)]),
        model=ModelConfig(model=str(model_dir)),
        blocks=BlocksConfig(block_size=block_size),
    )
    return prepare(config, run_dir).run_dir


class Inspector:
    """A TrainerCallback (built lazily) that records what the trainer really trains and every loss."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Inspector(TrainerCallback):
            def __init__(self) -> None:
                self.info: dict[str, Any] = {}
                self.losses: list[float] = []
                self.before: dict[str, Any] = {}

            def on_train_begin(self, args, state, control, model=None, **kw):
                import bitsandbytes as bnb

                four = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
                first = four[0] if four else None
                qs = getattr(first.weight, "quant_state", None) if first is not None else None
                self.info = {
                    "linear4bit_layers": len(four),
                    "quant_type": getattr(qs, "quant_type", None),
                    "double_quant": bool(getattr(qs, "nested", False)),
                    "compute_dtype": str(getattr(first, "compute_dtype", None)),
                    "gradient_checkpointing": bool(
                        getattr(model, "is_activation_checkpointing", None)
                        or getattr(model, "is_gradient_checkpointing", False)
                    ),
                    "bf16": bool(args.bf16),
                    "device": str(next(model.parameters()).device),
                }
                self.before = {
                    n: p.detach().clone()
                    for n, p in model.named_parameters()
                    if ("lora_B" in n or "layers.0.mlp.down_proj.base_layer" in n)
                }

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    self.losses.append(float(logs["loss"]))

            def on_train_end(self, args, state, control, model=None, **kw):
                import torch

                params = dict(model.named_parameters())
                self.lora_changed = any(not torch.equal(params[n], v) for n, v in self.before.items() if "lora_B" in n)
                self.base_same = all(torch.equal(params[n], v) for n, v in self.before.items() if "base_layer" in n)

        return _Inspector()


def check_qlora(small: Path, work: Path, out: Path | None) -> Path:
    import torch

    from kinject.models.loading import compute_dtype
    from kinject.training.pipeline import train

    run = prepare_run(small, work / "run-qlora", 256)
    inspector = Inspector()
    cuda = torch.cuda.is_available()
    cfg = TrainConfig(
        preset="case-study",
        max_steps=30,
        learning_rate=2e-3,
        quantization="auto" if cuda else "4bit",  # on CUDA the default must pick 4-bit by itself
    )
    t0 = time.time()
    result = train(run, cfg, Progress(), callbacks=[inspector], blocks=BlocksConfig(block_size=256))
    info = inspector.info
    half = compute_dtype()  # bf16 where the GPU has it, else fp16
    bf16 = half is torch.bfloat16
    falls = len(inspector.losses) >= 2 and min(inspector.losses[-3:]) < inspector.losses[0]
    ok = (
        result.status == "done"
        and info["linear4bit_layers"] > 0
        and info["quant_type"] == "nf4"
        and info["double_quant"]
        and falls
        and inspector.lora_changed
        and inspector.base_same
        and (
            not cuda
            or (info["gradient_checkpointing"] and info["compute_dtype"] == str(half) and info["bf16"] == bf16)
        )
    )
    record(
        "qlora",
        ok,
        out,
        **info,
        loss_first=inspector.losses[0] if inspector.losses else None,
        loss_last=inspector.losses[-1] if inspector.losses else None,
        lora_changed=inspector.lora_changed,
        base_4bit_unchanged=inspector.base_same,
        steps=result.step,
        seconds=round(time.time() - t0, 1),
    )
    return run


def check_masking(small: Path, out: Path | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kinject.training.loop import collate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(small, dtype=dtype).to(device).eval()
    model.config.use_cache = False
    tok = AutoTokenizer.from_pretrained(small)
    first = tok("Packed documents must not see each other.")["input_ids"]
    second = tok("The second document has its own context and facts: P5 uses H100 GPUs.")["input_ids"]
    ids = first + second
    block = {"input_ids": ids, "labels": ids, "position_ids": list(range(len(first))) + list(range(len(second)))}
    batch = {k: v.to(device) for k, v in collate([block], tok.pad_token_id).items() if k != "labels"}
    with torch.no_grad():
        packed = model(**batch).logits[0, len(first) :].float()
        alone = model(torch.tensor([second], device=device)).logits[0].float()
        # Control: the same packed ids with continuous positions and a full causal mask do see the first document.
        leaky = model(torch.tensor([ids], device=device)).logits[0, len(first) :].float()
    diff, leak = (packed - alone).abs().max().item(), (leaky - alone).abs().max().item()
    tol = 0.05 if dtype == torch.bfloat16 else 1e-4
    record(
        "masking",
        diff < tol < leak,
        out,
        max_abs_diff=diff,
        control_diff_without_masking=leak,
        tolerance=tol,
        attn_implementation=model.config._attn_implementation,
    )
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def check_stop_resume(run: Path, out: Path | None) -> None:
    from kinject.runtime.jobs import JobManager, read_status
    from kinject.training.job import submit_training

    jobs = JobManager()
    total = 200
    cfg = TrainConfig(preset="case-study", max_steps=total, save_steps=1000)
    submit_training(jobs, run, cfg, blocks=BlocksConfig(block_size=256))
    deadline = time.time() + 300
    while jobs.running() and jobs.state().step < 5 and time.time() < deadline:
        time.sleep(0.05)
    asked_at = jobs.state().step
    jobs.stop()
    stopped = jobs.wait(300)
    meta = RunDir(run).read_adapter_meta()
    submit_training(jobs, run, cfg, resume=True)
    resumed = jobs.wait(600)
    steps = [r["step"] for r in RunDir(run).read_metrics() if "step" in r]
    ok = (
        stopped.status == "stopped"
        and meta.get("step") == stopped.step
        and asked_at <= stopped.step < total
        and resumed.status == "done"
        and RunDir(run).read_adapter_meta().get("step") == total
        and steps == sorted(set(steps))
        and steps[-1] == total
        and read_status(RunDir(run)).status == "done"
    )
    record(
        "stop",
        ok,
        out,
        stop_asked_at_step=asked_at,
        stopped_at_step=stopped.step,
        adapter_meta_step=meta.get("step"),
        resumed_status=resumed.status,
        resumed_final_step=resumed.step,
        metric_steps_unique_and_ordered=steps == sorted(set(steps)),
    )


def check_oom(small: Path, work: Path, out: Path | None) -> None:
    import torch

    from kinject.runtime.jobs import JobManager
    from kinject.training.job import submit_training

    run = prepare_run(small, work / "run-oom", 2048)
    jobs = JobManager()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(
        min(1.0, 0.5 * 2**30 / total)
    )  # 0.5 GiB: the model fits, a batch of 2048-token blocks not
    try:
        submit_training(
            jobs,
            run,
            TrainConfig(preset="case-study", max_steps=3, batch_size=16),
            blocks=BlocksConfig(block_size=2048),
        )
        failed = jobs.wait(300)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    after = torch.cuda.memory_allocated()
    submit_training(
        jobs, run, TrainConfig(preset="case-study", max_steps=3, batch_size=1), blocks=BlocksConfig(block_size=512)
    )
    nxt = jobs.wait(300)
    ok = (
        failed.status == "failed"
        and failed.error.startswith("CUDA out of memory at step ")
        and "batch size" in failed.error
        and after - baseline < 64 * 2**20
        and nxt.status == "done"
    )
    record(
        "oom",
        ok,
        out,
        error=failed.error[:240],
        memory_left_after_failure_mb=round((after - baseline) / 2**20, 1),
        next_job=nxt.status,
    )


def check_merge(run: Path, out: Path | None) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kinject.sharing.merge import merge

    merged_dir = merge(run)
    base_path = RunDir(run).section("model")["model"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(merged_dir)
    ids = torch.tensor([tok("Amazon EC2 P5 instances have H100 GPUs.")["input_ids"]], device=device)
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).to(device).eval()
        m_logits = merged(ids).logits.float()
        del merged
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).to(device)
        b_logits = base(ids).logits.float()
        peft = PeftModel.from_pretrained(base, str(RunDir(run).adapter_dir)).eval()
        p_logits = peft(ids).logits.float()
    diff = (m_logits - p_logits).abs().max().item()
    moved = (p_logits - b_logits).abs().max().item()
    shards = sorted(p.name for p in merged_dir.glob("*.safetensors"))
    record(
        "merge",
        diff < 0.1 and moved > diff and bool(shards),
        out,
        max_abs_diff_vs_base_plus_adapter=diff,
        adapter_effect=moved,
        shards=shards,
    )


def bench_recipe(name: str, model_dir: Path, work: Path, out: Path | None, steps: int = 8) -> dict[str, Any]:
    """Case-study recipe: steps/s, tokens/s and peak GPU memory (after 2 warm-up steps)."""
    import torch

    from kinject.training.pipeline import train

    run = prepare_run(model_dir, work / f"run-{name}", 2048)
    n_blocks = RunDir(run).blocks_infos()[0]["stats"]["blocks"]
    times: list[float] = []

    class Timer(Progress):
        def advance(self, n: int = 1, **info: Any) -> None:
            if "step" in info:
                torch.cuda.synchronize()
                times.append(time.time())

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    train(run, TrainConfig(preset="case-study", max_steps=steps, save_steps=1000), Timer())
    per_step = (times[-1] - times[1]) / (len(times) - 2) if len(times) > 2 else float("nan")
    numbers = {
        "blocks": n_blocks,
        "s_per_step": round(per_step, 3),
        "tokens_per_s": round(2 * 2048 / per_step, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "wall_s_incl_load": round(time.time() - t0, 1),
    }
    record(f"bench:{name}", True, out, **numbers)
    return numbers


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", type=Path, help="Tokenizer folder (default: the bundled model's).")
    parser.add_argument("--out", type=Path, help="Write the results as JSON here.")
    parser.add_argument("--work", type=Path, help="Scratch folder (default: a temporary one).")
    parser.add_argument("--bench", action="store_true", help="Also time the case-study recipe (CUDA only).")
    parser.add_argument("--only", default="", help="Comma-separated checks to run (default: all).")
    parser.add_argument("--require-cuda", action="store_true", help="Fail at once when torch sees no CUDA device.")
    args = parser.parse_args()
    if args.tokenizer is None:
        from kinject.models.loading import ensure_bundled_model

        args.tokenizer = ensure_bundled_model()
    work = args.work or Path(tempfile.mkdtemp(prefix="kinject-cuda-"))
    cuda = torch.cuda.is_available()
    print(
        json.dumps({"torch": torch.__version__, "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None}),
        flush=True,
    )
    if args.require_cuda and not cuda:
        print(json.dumps({"failed": ["cuda"], "error": f"torch {torch.__version__} sees no CUDA device"}))
        return 1
    only = {c for c in args.only.split(",") if c}
    want = lambda c: not only or c in only  # noqa: E731
    small = build_llama(work / "small", args.tokenizer, **SMALL)
    steps = [
        ("masking", lambda: check_masking(small, args.out)),
        ("qlora", lambda: RESULTS.__setitem__("_run", check_qlora(small, work, args.out))),
        ("stop", lambda: check_stop_resume(RESULTS["_run"], args.out)),
        ("merge", lambda: check_merge(RESULTS["_run"], args.out)),
    ]
    if cuda:
        steps.append(("oom", lambda: check_oom(small, work, args.out)))
    for name, fn in steps:
        if not want(name):
            continue
        if name in ("stop", "merge") and "_run" not in RESULTS:
            record(name, False, args.out, error="needs the run the qlora check trains (add qlora to --only)")
            continue
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - report and go on to the next check
            traceback.print_exc()
            record(name, False, args.out, error=f"{type(exc).__name__}: {exc}")
    RESULTS.pop("_run", None)
    if args.bench and cuda:
        shapes = {
            "tinyllama-1.1b": dict(
                hidden_size=2048,
                intermediate_size=5632,
                num_hidden_layers=22,
                num_attention_heads=32,
                num_key_value_heads=4,
            ),
        }
        l13 = dict(hidden_size=5120, intermediate_size=13824, num_attention_heads=40, num_key_value_heads=40)
        for layers in (2, 4):
            shapes[f"llama2-13b-{layers}of40-layers"] = dict(l13, num_hidden_layers=layers)
        got = {}
        for name, shape in shapes.items():
            try:
                got[name] = bench_recipe(name, build_llama(work / name, args.tokenizer, **shape), work, args.out)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                record(f"bench:{name}", False, args.out, error=f"{type(exc).__name__}: {exc}")
        a, b = got.get("llama2-13b-2of40-layers"), got.get("llama2-13b-4of40-layers")
        if a and b:
            per_layer = {k: (b[k] - a[k]) / 2 for k in ("s_per_step", "peak_memory_gib")}
            est = {k: round(a[k] + 38 * per_layer[k], 2) for k in per_layer}
            record(
                "estimate:llama2-13b-40-layers",
                True,
                args.out,
                **est,
                tokens_per_s=round(2 * 2048 / est["s_per_step"], 1),
                note="linear extrapolation from 2 and 4 layers of the 13B shape (vocab of the bundled tokenizer)",
            )
    failed = [k for k, v in RESULTS.items() if not v.get("ok")]
    print(json.dumps({"failed": failed}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
