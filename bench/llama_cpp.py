"""llama.cpp against transformers on kinject's GGUF files: the same greedy tokens, and tokens per second of each.

    python bench/llama_cpp.py [--export RUN/export] [--venv DIR] [--max-new-tokens 24] [--threads N] [--out FILE]

Without ``--export`` it trains nothing: it writes the bundled model as GGUF (``model-f16.gguf``, ``model-q8_0.gguf``
through ``kinject.sharing.gguf_model``) and a random LoRA adapter of it (``adapter.gguf`` through
``kinject.sharing.gguf_lora``) into ``bench-out/llama-cpp/`` and compares, on a few chat prompts:
  f16, q8_0       llama.cpp on model-TYPE.gguf          vs transformers on the model (float32)
  lora-f16        llama.cpp on model-f16.gguf --lora     vs transformers on the model with the adapter (peft)
  lora-q4_1       llama.cpp on the bundled Q4_1 GGUF --lora (what ``kinject export --what lora`` writes for it)
With ``--export`` (the ``export/`` folder ``kinject export`` wrote for a run) it compares every ``model-*.gguf`` and
every base GGUF with ``adapter.gguf`` over it against transformers on the run's merged model.

The prompts' token ids are transformers' (its chat template), fed to both, so the tokens compared are the models';
whether llama.cpp's own tokenizer splits the prompts alike is reported beside (``same_tokenizer``). Greedy decoding
has near ties (a top-two logit margin of a few hundredths) where f16 or q8_0 rounding may pick the other token, so
``agree`` is the share of prompts whose answers are equal, ``prefix`` the mean share of each answer equal up to the
first difference, and ``gaps`` transformers' logit margin of its token over llama.cpp's where they first differ.
Tokens per second count the answer's tokens over the time of the whole call (prompt included), measured alike on
both, on the same number of threads.

llama-cpp-python goes into its own virtual environment (``--venv``, default ``bench-out/llama-cpp-venv``), installed
when absent with ``pip install llama-cpp-python``, which builds llama.cpp from source with cmake (about 10 minutes on
2 cores); llama.cpp runs there in a subprocess. Prints a line of JSON per comparison and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "Write one sentence about the sea.",
    "What is 2 + 2?",
]
# Runs in the llama-cpp-python environment: greedy answers to the given token ids, and its own tokenization.
RUNNER = r"""
import json, sys, time
import llama_cpp.llama_cpp as lib
from llama_cpp import Llama
job = json.load(sys.stdin)
if not job["extra_buffers"]:  # no repacked or AMX weights: llama.cpp's plain CPU path
    default_params = lib.llama_model_default_params
    def model_params():
        params = default_params()
        params.use_extra_bufts = False
        return params
    lib.llama_model_default_params = model_params
llm = Llama(model_path=job["model"], lora_path=job["lora"], n_ctx=512, n_threads=job["threads"],
            n_threads_batch=job["threads"], seed=0, verbose=False)
eos, results = llm.token_eos(), []
for ids in job["prompts"]:
    start, tokens = time.perf_counter(), []
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        if token == eos:
            break
        tokens.append(int(token))
        if len(tokens) >= job["max_new_tokens"]:
            break
    results.append({"tokens": tokens, "seconds": time.perf_counter() - start})
tokenized = [llm.tokenize(text.encode(), add_bos=False, special=True) for text in job["texts"]]
print(json.dumps({"results": results, "tokenized": tokenized}))
"""


def ensure_llama_cpp(venv: Path) -> Path:
    """The python of ``venv`` with llama-cpp-python importable, created and installed when absent."""
    python = venv / "bin" / "python"
    found = python.exists() and subprocess.run([python, "-I", "-c", "import llama_cpp"], capture_output=True)
    if found and found.returncode == 0:
        return python
    print(f"installing llama-cpp-python into {venv} (builds llama.cpp from source: minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "llama-cpp-python"], check=True)
    return python


def run_llama_cpp(python: Path, model: Path, lora: Path | None, prompts: list[list[int]], texts: list[str], args):
    """llama.cpp's greedy answers (token ids, seconds) to ``prompts``, and its tokenization of ``texts``.

    Measured (llama-cpp-python 0.3.36, an Intel Xeon with AMX): llama.cpp's AMX path for quantized weights dies
    with a segmentation fault on any quantized file, the bundled Q4_1 its own converter wrote included; such a run
    is tried again without llama.cpp's extra buffer types (``use_extra_bufts``), and the row says so."""
    job = {"model": str(model), "lora": str(lora) if lora else None, "prompts": prompts, "texts": texts}
    job |= {"threads": args.threads, "max_new_tokens": args.max_new_tokens}
    for extra_buffers in (True, False):
        data = json.dumps({**job, "extra_buffers": extra_buffers})
        done = subprocess.run([python, "-I", "-c", RUNNER], input=data, capture_output=True, text=True)
        if done.returncode >= 0:  # not killed by a signal
            break
        print(f"llama.cpp died ({done.returncode}) on {model.name}: again without extra buffers", file=sys.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"llama.cpp failed ({done.returncode}) on {model.name}: {done.stderr[-2000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "extra_buffers": extra_buffers}


def run_transformers(model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int) -> list[dict]:
    """transformers' greedy answers (token ids, seconds) to ``prompts``, one at a time as llama.cpp answers them."""
    import torch

    results = []
    for ids in prompts:
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        tokens = [int(t) for t in out[0, len(ids) :] if int(t) != tokenizer.eos_token_id]
        results.append({"tokens": tokens, "seconds": time.perf_counter() - start})
    return results


def gap_at_difference(model: Any, prompt: list[int], ours: list[int], theirs: list[int], at: int) -> float | None:
    """Where the answers first differ: transformers' logit of its own token minus its logit of llama.cpp's token
    (a few hundredths is a near tie that rounding may flip; whole logits would be a wrong model)."""
    import torch

    if at >= min(len(ours), len(theirs)):
        return None  # one answer stops where the other goes on
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ours[:at]])).logits[0, -1].float()
    return round(float(logits[ours[at]] - logits[theirs[at]]), 3)


def compare(name: str, theirs: dict, ours: list[dict], prompt_ids: list[list[int]], model: Any) -> dict[str, Any]:
    """One row: how far llama.cpp's answers agree with transformers', the logit gaps where they differ, speeds."""
    agree, prefix, gaps = 0, 0.0, []
    for prompt, a, b in zip(prompt_ids, theirs["results"], ours, strict=True):
        x, y = a["tokens"], b["tokens"]
        same = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
        agree += x == y
        prefix += same / max(len(x), len(y), 1)
        if x != y:
            gaps.append(gap_at_difference(model, prompt, y, x, same))

    def speed(rows: list[dict]) -> float:
        return round(sum(len(r["tokens"]) for r in rows) / sum(r["seconds"] for r in rows), 1)

    return {
        "case": name,
        "agree": f"{agree}/{len(ours)}",
        "prefix": round(prefix / len(ours), 3),
        "same_tokenizer": theirs["tokenized"] == prompt_ids,
        "extra_buffers": theirs["extra_buffers"],
        "gaps_at_first_difference": gaps,
        "llama_cpp_tok_s": speed(theirs["results"]),
        "transformers_tok_s": speed(ours),
        "answers": [[r["tokens"] for r in theirs["results"]], [r["tokens"] for r in ours]],
    }


def random_adapter(model: Any, folder: Path) -> Path:
    """A LoRA adapter of ``model`` (r 8 on every linear layer) with B drawn small, as if trained a little."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    peft.save_pretrained(str(folder))
    return folder


def bundled_cases(out: Path) -> tuple[Any, list[tuple[str, Path, Path | None, Any]]]:
    """Write the bundled model's files; (tokenizer, [(case, GGUF, adapter GGUF, transformers model)])."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kinject.models.loading import ResolvedModel, bundled_gguf_path, ensure_bundled_model, load_tokenizer
    from kinject.sharing.gguf_lora import write_lora_gguf
    from kinject.sharing.gguf_model import write_gguf

    folder = ensure_bundled_model()
    tokenizer = load_tokenizer(ResolvedModel("bundled", str(folder), "bundled"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out.mkdir(parents=True, exist_ok=True)
    files = {q: write_gguf(out / f"model-{q}.gguf", model, tokenizer, q, "smollm2") for q in ("f16", "q8_0")}
    adapter = random_adapter(model, out / "adapter")
    lora = write_lora_gguf(out / "adapter.gguf", adapter, model.config, "smollm2-lora", type(model).__name__)
    fresh = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(fresh, str(adapter)).merge_and_unload().eval()
    cases = [("f16", files["f16"], None, model), ("q8_0", files["q8_0"], None, model)]
    cases += [("lora-f16", files["f16"], lora, with_adapter), ("lora-q4_1", bundled_gguf_path(), lora, with_adapter)]
    return tokenizer, cases


def export_cases(folder: Path) -> tuple[Any, list[tuple[str, Path, Path | None, Any]]]:
    """The cases of a run's ``export/`` folder, all against the run's merged model."""
    import torch

    from kinject.runs import RunDir
    from kinject.runtime.progress import Progress
    from kinject.sharing.merge import load_merged

    run = RunDir(folder.resolve().parent)
    model, tokenizer = load_merged(run, run.require_adapter(), torch.float32, Progress())
    model.eval()
    cases = [(path.stem, path, None, model) for path in sorted(folder.glob("model-*.gguf"))]
    lora = folder / RunDir.export_adapter_name()
    if lora.is_file():
        bases = [p for p in sorted(folder.glob("*.gguf")) if p != lora and not p.name.startswith("model-")]
        cases += [(f"lora over {base.name}", base, lora, model) for base in bases]
    return tokenizer, cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, help="a run's export/ folder (default: export the bundled model)")
    parser.add_argument("--venv", type=Path, default=ROOT / "bench-out" / "llama-cpp-venv")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON lines here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    python = ensure_llama_cpp(args.venv)
    if args.export:
        tokenizer, cases = export_cases(args.export)
    else:
        tokenizer, cases = bundled_cases(ROOT / "bench-out" / "llama-cpp")
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS
    ]
    prompt_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    rows = []
    for name, gguf, lora, model in cases:
        theirs = run_llama_cpp(python, gguf, lora, prompt_ids, texts, args)
        ours = run_transformers(model, tokenizer, prompt_ids, args.max_new_tokens)
        rows.append(compare(name, theirs, ours, prompt_ids, model))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    header = ["case", "same greedy answers", "mean equal prefix", "logit gaps where they differ", "same tokenizer"]
    print("\n| " + " | ".join([*header, "llama.cpp tok/s", "transformers tok/s"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        gaps = ", ".join("-" if g is None else f"{g:.3f}" for g in r["gaps_at_first_difference"]) or "-"
        print(
            f"| {r['case']} | {r['agree']} | {r['prefix']:.2f} | {gaps} | {'yes' if r['same_tokenizer'] else 'no'} "
            f"| {r['llama_cpp_tok_s']} | {r['transformers_tok_s']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
