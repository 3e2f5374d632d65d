"""Knowledge-injection sweep: how probe accuracy moves with epochs, LoRA rank and learning rate.

Usage: ``python bench/knowledge_sweep.py [--configs LR:R:ALPHA ...] [--epochs 5,10,20] [--out FILE]``

Prepares the sample corpus shipped with the tests (six AWS Summit NYC 2023 pages, read as local files), then for
each (learning rate, rank, alpha) trains with kinject's own ``train`` (cpu or GPU defaults, constant learning rate
after warmup) and scores, at the listed epochs, the sample's knowledge probes and kinject's shipped retention
probes in chat form (greedy, short answers) with the evaluation's own scorer (``kinject.eval.score_probes``). One
training per configuration covers the epoch axis: a callback scores the model between epochs. Prints a JSON line
per (config, epoch) and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kinject.corpus.prepare import prepare  # noqa: E402
from kinject.eval import load_probes, score_probes, shipped_retention_probes  # noqa: E402
from kinject.models.loading import load_tokenizer, resolve_model  # noqa: E402
from kinject.settings.sources import InputsConfig  # noqa: E402
from kinject.settings.stages import BlocksConfig, GenerationConfig, PrepareConfig  # noqa: E402
from kinject.settings.training import TrainConfig  # noqa: E402
from kinject.training.pipeline import train  # noqa: E402

SAMPLES = REPO / "tests" / "data" / "samples" / "aws-summit-nyc-2023"


def sweep_probes() -> tuple[list, list]:
    """The sample's knowledge probes and the shipped retention probes that have accepted answers."""
    knowledge = [p for p in load_probes(SAMPLES / "probes.jsonl") if p.kind == "knowledge"]
    return knowledge, [p for p in shipped_retention_probes() if p.answers]


def score(model, tokenizer, probes: list, max_new_tokens: int) -> tuple[int, list[str]]:
    answers = score_probes(model, tokenizer, probes, GenerationConfig(max_new_tokens=max_new_tokens), logprob=False)
    return sum(bool(a.correct) for a in answers), [a.text for a in answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["2e-4:64:16", "5e-4:16:32", "1e-3:16:32", "1e-3:64:128"])
    parser.add_argument("--epochs", default="5,10,20", help="epochs at which to score (the last is trained to)")
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--text-format", default="raw", choices=["raw", "chat", "both"])
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = parser.parse_args()
    epochs = sorted(int(e) for e in args.epochs.split(","))
    knowledge, retention = sweep_probes()
    work = Path(tempfile.mkdtemp(prefix="kinject-sweep-"))
    files = sorted(str(p) for p in SAMPLES.glob("*.html"))
    blocks = BlocksConfig(block_size=args.block_size, text_format=args.text_format)
    prep = PrepareConfig(inputs=InputsConfig(files=files), blocks=blocks)
    base_run = prepare(prep, work / "base").run_dir
    tokenizer = load_tokenizer(resolve_model(prep.model.model))
    results = []

    def emit(row: dict) -> None:
        results.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")

    from transformers import AutoModelForCausalLM, TrainerCallback

    base = AutoModelForCausalLM.from_pretrained(resolve_model(prep.model.model).path).eval()
    k, k_answers = score(base, tokenizer, knowledge, args.max_new_tokens)
    r, _ = score(base, tokenizer, retention, args.max_new_tokens)
    emit({"config": "base", "epoch": 0, "knowledge": k, "retention": r, "answers": k_answers})
    del base

    for spec in args.configs:
        lr, rank, alpha = spec.split(":")
        spec_name = f"{spec}:{args.text_format}" if args.text_format != "raw" else spec
        run = work / f"run-{spec.replace(':', '_')}"
        shutil.copytree(base_run, run)
        config = TrainConfig(
            preset="knowledge",
            epochs=epochs[-1],
            learning_rate=float(lr),
            lora_r=int(rank),
            lora_alpha=int(alpha),
            save_steps=10_000,
            guard_checks=0,  # the sweep scores every epoch itself
        )
        started = time.time()

        class ScoreAtEpochs(TrainerCallback):
            def on_epoch_end(self, targs, state, control, model=None, spec=spec_name, started=started, **kw):
                epoch = round(state.epoch or 0)
                if epoch not in epochs:
                    return
                model.eval()
                kk, answers = score(model, tokenizer, knowledge, args.max_new_tokens)
                rr, _ = score(model, tokenizer, retention, args.max_new_tokens)
                model.train()
                loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
                emit(
                    {
                        "config": spec,
                        "epoch": epoch,
                        "step": state.global_step,
                        "loss": loss,
                        "knowledge": kk,
                        "retention": rr,
                        "seconds": round(time.time() - started, 1),
                        "answers": answers,
                    }
                )

        train(run, config, callbacks=[ScoreAtEpochs()], blocks=blocks)

    print(f"\n| config (lr:rank:alpha) | epoch | loss | knowledge /{len(knowledge)} | retention /{len(retention)} |")
    print("|---|---|---|---|---|")
    for row in results:
        loss = f"{row['loss']:.3f}" if row.get("loss") is not None else "-"
        print(f"| {row['config']} | {row['epoch']} | {loss} | {row['knowledge']} | {row['retention']} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
