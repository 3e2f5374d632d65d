"""The plain LoRA loop: the reference the default recipe is walked from, written apart from kinject's trainer.

Rows are trained one chat exchange each (loss on the answer), in shuffled batches of ``--batch`` rows padded to the
longest, with replay rows (the base model's own answers to the shipped replay prompts) making up ``--replay-share``
of the tokens under ``--kl-weight`` x KL(base || adapter); no raw pages, no packing, no guard. The adapter is saved
as the run's adapter, so ``kinject eval RUN --probes FILE`` scores it as it scores kinject's own.

    python bench/plain_loop.py RUN --rows generated --passes 10
    python bench/plain_loop.py RUN --rows user --passes 10 --seed 7

``--rows``: ``generated`` (the run's kept question-answer rows, as ``kinject augment`` made them), ``user`` (the
run's own question file, ``kinject prepare --questions``) or ``both``. The run must have been augmented (``kinject
augment RUN``, or a training) for its replay rows and generated rows.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kinject.runs import RunDir  # noqa: E402


def load_rows(run: RunDir, which: str) -> tuple[list[dict], list[dict]]:
    """(question-answer rows, replay rows) of the run's newest augmentation."""
    from kinject.augment import user_rows

    def newest(kind: str) -> list[dict]:
        files = sorted(run.path.glob(f"augment/{kind}-*.jsonl"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise SystemExit(f"{run} has no {kind} rows: run `kinject augment {run}` first")
        return [r for r in map(json.loads, files[-1].read_text().splitlines()) if r.get("kept")]

    qa = []
    if which in ("generated", "both"):
        qa += newest("qa")
    if which in ("user", "both"):
        qa += user_rows(run)
    if not qa:
        raise SystemExit(f"{run}: no question-answer rows for --rows {which}")
    return qa, newest("replay")


def examples(qa: list[dict], replay: list[dict], passes: float, share: float, tokenizer, rng) -> list[tuple]:
    """(ids, labels, is_replay) for every row of every pass, replay rows added until they are ``share`` of the
    tokens, shuffled."""
    from kinject.corpus.blocks import chat_example

    rows = [chat_example(r["question"], r["answer"], tokenizer) for r in qa]
    whole, frac = int(passes), passes - int(passes)
    picked = rows * whole + rng.sample(rows, round(frac * len(rows)))
    out = [(ids, labels, False) for ids, labels in picked]
    tokens = sum(len(ids) for ids, _, _ in out)
    target = share / (1 - share) * tokens if share else 0
    order, i, got = replay[:], 0, 0
    rng.shuffle(order)
    while got < target:
        r = order[i % len(order)]
        i += 1
        ids, labels = chat_example(r["question"], r["answer"], tokenizer, ended=r.get("ended", True))
        out.append((ids, labels, True))
        got += len(ids)
    rng.shuffle(out)
    return out


def batches(data: list[tuple], size: int, rng) -> list[list[tuple]]:
    """Batches of ``size`` rows; rows of like length batched together (sorted within windows of 8 batches, the
    batches then shuffled), so a batch pads little: a short answer beside a long replay row would pad to it."""
    window = size * 8
    out = []
    for start in range(0, len(data), window):
        chunk = sorted(data[start : start + window], key=lambda r: len(r[0]))
        out += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(out)
    return out


def batch_loss(model, batch: list[tuple], pad_id: int, kl_weight: float):
    """Cross-entropy on question-answer answers plus ``kl_weight`` x KL(base || adapter) on replay answers, over
    the batch's scored tokens."""
    import torch

    width = max(len(ids) for ids, _, _ in batch)
    ids = torch.tensor([b[0] + [pad_id] * (width - len(b[0])) for b in batch])
    labels = torch.tensor([b[1] + [-100] * (width - len(b[1])) for b in batch])
    mask = torch.tensor([[1] * len(b[0]) + [0] * (width - len(b[0])) for b in batch])
    replay = torch.tensor([b[2] for b in batch])[:, None].expand(-1, width - 1)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    scored = targets != -100
    hard, soft = scored & ~replay, scored & replay
    loss = logits.new_zeros(())
    if hard.any():
        loss = torch.nn.functional.cross_entropy(logits[hard], targets[hard], reduction="sum")
    if soft.any():
        with torch.no_grad(), model.disable_adapter():
            base = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()[soft]
        base_logp = torch.log_softmax(base, -1)
        adapter_logp = torch.log_softmax(logits[soft], -1)
        loss = loss + kl_weight * (base_logp.exp() * (base_logp - adapter_logp)).sum()
    return loss / scored.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--rows", choices=("generated", "user", "both"), default="generated")
    parser.add_argument("--passes", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--replay-share", type=float, default=0.4)
    parser.add_argument("--kl-weight", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    from kinject.models.loading import load_model, load_tokenizer, resolve_model

    run = RunDir(args.run).require()
    resolved = resolve_model(run.section("model").get("model", "smollm2-135m-instruct"))
    tokenizer = load_tokenizer(resolved)
    torch.manual_seed(args.seed)
    model = load_model(resolved)
    model = get_peft_model(
        model, LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.05, target_modules="all-linear")
    )
    qa, replay = load_rows(run, args.rows)
    rng = random.Random(args.seed)
    data = examples(qa, replay, args.passes, args.replay_share, tokenizer, rng)
    plan = batches(data, args.batch, rng)
    steps = len(plan)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    started, history = time.time(), []
    model.train()
    for step in range(steps):
        loss = batch_loss(model, plan[step], pad, args.kl_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        history.append({"step": step + 1, "loss": round(loss.item(), 4)})
        if (step + 1) % 10 == 0 or step + 1 == steps:
            print(f"step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - started:.0f} s)", flush=True)
    model.eval()
    meta = {
        "status": "done",
        "step": steps,
        "total_steps": steps,
        "plain_loop": {**vars(args), "qa_rows": len(qa), "examples": len(data)},
        "train_seconds": round(time.time() - started, 1),
    }

    def save(folder: Path) -> None:
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))

    run.write_adapter(save, meta, history)
    print(json.dumps({"run": str(run), "steps": steps, "qa_rows": len(qa), "seconds": meta["train_seconds"]}))


if __name__ == "__main__":
    main()
