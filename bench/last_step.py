"""What a recipe's last step knows, beside the step its forgetting guard kept.

For runs made by ``bench/recipe_check.py``, this copies each run, puts its last checkpoint's LoRA weights in place
of the adapter the guard kept, evaluates the copy with the same probes (``kinject eval --probes``) and adds a row
labelled ``<label>, last step`` to the same ``results.jsonl`` and ``table.md``: the knowledge the recipe reached and
the drift it cost, which the guard's bound refused.

    python bench/last_step.py --out /tmp/recipe --sets dev,announcement --seeds 42
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_check import kinject, pages_and_probes, scores, table  # noqa: E402

from kinject.runs import RunDir, checkpoint_step  # noqa: E402


def last_step_row(row: dict, out: Path) -> dict:
    """Evaluate the last checkpoint of ``row``'s run; its results row."""
    run = RunDir(out / f"{row['label']}-{row['set']}-seed{row['seed']}")
    last = run.last_checkpoint()
    if last is None:
        raise SystemExit(f"{run.path} has no checkpoint")
    copy = RunDir(run.path.with_name(run.path.name + "-last"))
    shutil.rmtree(copy.path, ignore_errors=True)
    shutil.copytree(run.path, copy.path, ignore=shutil.ignore_patterns("checkpoints", "ablation"))
    weights, _ = run.checkpoint_files(last)
    shutil.copyfile(weights, copy.adapter_weights())
    log = out / f"{copy.path.name}.log"
    _, probes = pages_and_probes(row["set"])
    started = time.time()
    kinject("eval", str(copy.path), "--probes", str(probes), log=log)
    return {
        **row,
        **scores(copy.read_eval()),
        "label": f"{row['label']}, last step",
        "kept_step": checkpoint_step(last),
        "learnt": None,
        "eval_s": round(time.time() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="recipe_check.py's folder")
    parser.add_argument("--sets", default="announcement,lookalikes")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--label", default="default")
    args = parser.parse_args()
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    wanted = {(name, int(seed)) for name in args.sets.split(",") for seed in args.seeds.split(",")}
    done = {(r["set"], r["seed"]) for r in rows if r["label"] == f"{args.label}, last step"}
    for row in [r for r in rows if r["label"] == args.label and (r["set"], r["seed"]) in wanted - done]:
        print(f"{args.label}, last step: {row['set']}, seed {row['seed']}", flush=True)
        rows.append(last_step_row(row, args.out))
        with results.open("a", encoding="utf-8") as out:
            out.write(json.dumps(rows[-1]) + "\n")
        (args.out / "table.md").write_text(table(rows), encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
