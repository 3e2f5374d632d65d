"""llama.cpp's logits against transformers' on small random Llama, Mistral and Qwen2 models written by kinject, with
and without a LoRA adapter (``--lora``): the architectures' metadata, tensor names, Qwen2's biases and a Llama's
q/k row order as llama.cpp itself reads them (the tests read the files back through transformers' GGUF loader only).

    python bench/llama_cpp_archs.py [--venv DIR] [--threads N] [--out FILE]

Each model: 2 layers, hidden size 64, 4 heads (2 for keys and values), weights drawn with standard deviation 0.1 so
that the logits spread over a few units, the bundled model's tokenizer; Qwen2's q/k/v biases drawn too; the Mistral
with a head size of 32 (not hidden / heads). f16 files, so the tolerance is f16's. One sentence of 20 tokens: the
largest difference of any logit at any position, against the spread (standard deviation) of transformers' logits, and
the share of positions whose top token is the same; for an adapter, how far it moves transformers' logits (what a
file llama.cpp applied wrongly, or not at all, would miss). llama-cpp-python as in ``bench/llama_cpp.py`` (its venv).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# bench/llama_cpp.py, beside this script, by its path: its name is the llama-cpp-python package's.
_SPEC = importlib.util.spec_from_file_location("bench_llama_cpp", ROOT / "bench" / "llama_cpp.py")
BENCH = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(BENCH)

TEXT = "The quick brown fox jumps over the lazy dog near the river bank, while the sun sets slowly."
# Runs in the llama-cpp-python environment: the logits of every position of the prompt, saved as .npy.
RUNNER = r"""
import json, sys
import numpy as np
from llama_cpp import Llama
job = json.load(sys.stdin)
llm = Llama(model_path=job["model"], lora_path=job["lora"], n_ctx=128, n_threads=job["threads"], logits_all=True,
            seed=0, verbose=False)
llm.eval(job["ids"])
np.save(job["out"], np.asarray(llm.scores[: len(job["ids"])], dtype=np.float32))
"""


def random_model(kind: str, tokenizer: Any) -> Any:
    """A random small model of ``kind`` (llama, mistral, qwen2) with logits that spread."""
    import torch
    import transformers

    classes = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {}),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, {"head_dim": 32}),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {}),
    }
    config_class, model_class, extra = classes[kind]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=0.1,
        tie_word_embeddings=kind != "mistral",
        **extra,
    )
    model = model_class(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0.0, 0.5)
    return model


def llama_cpp_logits(python: Path, gguf: Path, lora: Path | None, ids: list[int], threads: int, out: Path) -> Any:
    import numpy as np

    job = {"model": str(gguf), "lora": str(lora) if lora else None, "ids": ids, "threads": threads, "out": str(out)}
    done = subprocess.run([python, "-I", "-c", RUNNER], input=json.dumps(job), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"llama.cpp failed ({done.returncode}) on {gguf.name}: {done.stderr[-2000:]}")
    return np.load(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / "bench-out" / "llama-cpp-venv")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON lines here")
    args = parser.parse_args()
    import torch
    from peft import PeftModel

    from kinject.models.loading import ResolvedModel, ensure_bundled_model, load_tokenizer
    from kinject.sharing.gguf_lora import write_lora_gguf
    from kinject.sharing.gguf_model import write_gguf

    torch.set_num_threads(args.threads)
    python = BENCH.ensure_llama_cpp(args.venv)
    tokenizer = load_tokenizer(ResolvedModel("bundled", str(ensure_bundled_model()), "bundled"))
    ids = tokenizer(TEXT)["input_ids"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kinject-archs-") as tmp:
        for kind in ("llama", "mistral", "qwen2"):
            model, folder = random_model(kind, tokenizer), Path(tmp) / kind
            folder.mkdir()
            gguf = write_gguf(folder / "model-f16.gguf", model, tokenizer, "f16", kind)
            adapter = BENCH.random_adapter(model, folder / "adapter")
            lora = write_lora_gguf(folder / "adapter.gguf", adapter, model.config, kind, type(model).__name__)
            merged = PeftModel.from_pretrained(random_model(kind, tokenizer), str(adapter)).merge_and_unload()
            with torch.no_grad():
                plain = model(torch.tensor([ids])).logits[0].float().numpy()
            for case, reference, with_lora in ((kind, model, None), (f"{kind} + lora", merged.eval(), lora)):
                with torch.no_grad():
                    expected = reference(torch.tensor([ids])).logits[0].float().numpy()
                got = llama_cpp_logits(python, gguf, with_lora, ids, args.threads, folder / "logits.npy")
                row = {
                    "case": case,
                    "max_abs_diff": round(float(abs(got - expected).max()), 4),
                    "logit_std": round(float(expected.std()), 3),
                    "same_top_token": round(float((got.argmax(-1) == expected.argmax(-1)).mean()), 3),
                    "adapter_moves_logits_by": round(float(abs(expected - plain).max()), 3),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print("\n| case | largest logit difference | spread of the logits (std) | same top token | the adapter moves |")
    print("|---|---|---|---|---|")
    for r in rows:
        moved = r["adapter_moves_logits_by"] or "-"
        print(f"| {r['case']} | {r['max_abs_diff']} | {r['logit_std']} | {r['same_top_token']:.0%} | {moved} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
