"""A recipe on the test sets, several seeds: what a new user gets from `prepare`, `train` and `eval --probes`.

For every set (``bench/data/<set>/``: its pages and probes.jsonl; ``samples``: the AWS sample pages) and seed, this
runs the CLI as a user would: ``kinject prepare --files PAGES``, ``kinject train RUN --seed N [options]`` (the
recipe's options; none: the default recipe), ``kinject eval RUN --probes probes.jsonl`` (full set, seed-faithful
decoding). One JSON line per run goes to ``OUT/results.jsonl`` (a run already there is read back, so an interrupted
check goes on where it stopped), and the table per set, summed or averaged over seeds, is printed and written to
``OUT/table.md``: knowledge of the base, the open-book base and the adapter; retention; KL; perplexity ratio;
contamination; end-of-turn rates; the step the guard kept and whether it learnt; wall time of training (augmentation
included) and of evaluation.

    python bench/recipe_check.py --out /tmp/recipe --sets announcement,lookalikes --seeds 42,7,11
    python bench/recipe_check.py --out /tmp/lr --label lr3e-4 -- --learning-rate 3e-4
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kinject.runs import RunDir  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "samples" / "aws-summit-nyc-2023"


def pages_and_probes(name: str) -> tuple[list[Path], Path]:
    """A set's pages and probe file."""
    if name == "samples":
        return sorted(SAMPLES.glob("*.html")), SAMPLES / "probes.jsonl"
    folder = ROOT / "bench" / "data" / name
    if not (folder / "probes.jsonl").is_file():
        raise SystemExit(f"no test set {name!r}: {folder}/probes.jsonl is missing")
    return sorted(p for p in folder.glob("*.md") if p.name != "README.md"), folder / "probes.jsonl"


def kinject(*args: str, log: Path) -> float:
    """Run ``python -m kinject ARGS``, its output appended to ``log``; the wall time in seconds."""
    started = time.time()
    with log.open("a", encoding="utf-8") as out:
        code = subprocess.call([sys.executable, "-m", "kinject", *args], cwd=ROOT, stdout=out, stderr=out)
    if code:
        raise SystemExit(f"kinject {args[0]} failed ({code}); see {log}")
    return time.time() - started


def run_one(name: str, seed: int, label: str, options: list[str], out: Path, how: Recipe) -> dict:
    """Prepare, train and evaluate one set with one seed; the row of results.jsonl."""
    pages, probes = pages_and_probes(name)
    run = out / f"{label}-{name}-seed{seed}"
    log = out / f"{run.name}.log"
    shutil.rmtree(run, ignore_errors=True)
    log.unlink(missing_ok=True)
    mine = ["--questions", str(how.questions)] if how.questions else []
    kinject("prepare", "--files", *map(str, pages), *mine, "--out", str(run), log=log)
    reused = how.reuse and _reuse_augmentation(run, out, name)
    if how.plain is not None:
        kinject("augment", str(run), *options, log=log)
        train_s = _plain(run, ["--seed", str(seed), *how.plain], log)
    else:
        train_s = kinject("train", str(run), "--seed", str(seed), *options, log=log)
    eval_s = kinject("eval", str(run), "--probes", str(probes), *how.eval_options, log=log)
    meta = RunDir(run).read_adapter_meta()
    return {
        "set": name,
        "seed": seed,
        "label": label,
        "options": options + (["(plain loop)", *how.plain] if how.plain is not None else []),
        **scores(RunDir(run).read_eval()),
        "data": data_summary(RunDir(run)),
        "steps": meta.get("total_steps"),
        "kept_step": meta.get("kept_step", meta.get("step")),
        "learnt": (meta.get("guard") or {}).get("learnt"),
        "budget": meta.get("budget"),
        "augment_s": None if reused else round(_generation_seconds(RunDir(run)), 1),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "reused_data": bool(reused),
        "probe_leaks": probe_leaks(run, probes),
    }


def probe_leaks(run: Path, probes: Path) -> list[str]:
    """The kept training questions that are a knowledge probe's own question (case and spacing aside): a probe
    trained as it is asked measures recall of that question, not knowledge of the fact, so a set with any is no
    longer a clean check of the rules that made them."""

    def said(text: str) -> str:
        return " ".join(text.lower().split())

    rows = [json.loads(line) for line in probes.read_text(encoding="utf-8").splitlines() if line.strip()]
    asked = {said(r["question"]) for r in rows if r.get("kind") == "knowledge" and r.get("question")}
    found = set()
    for path in (run / "augment").glob("qa-*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("kept") and said(str(row.get("question", ""))) in asked:
                found.add(row["question"])
    return sorted(found)


@dataclass
class Recipe:
    """How a recipe is run beyond its `kinject train` options."""

    plain: list[str] | None = None  # train with bench/plain_loop.py and these options instead of `kinject train`
    questions: Path | None = None  # the user's own question file, given to prepare
    reuse: bool = True  # take the generated data of an earlier run of the same set when its settings match
    eval_options: list[str] = field(default_factory=list)


def _reuse_augmentation(run: Path, out: Path, name: str) -> bool:
    """Copy the generated data (and shared blocks) of an earlier run of set ``name`` in ``out`` into ``run``: its
    cache keys name what it was generated with, so only data of matching settings is used."""
    earlier = sorted(p for p in out.glob(f"*-{name}-seed*/augment") if p.parent != run)
    if not earlier:
        return False
    shutil.copytree(earlier[-1], run / "augment", dirs_exist_ok=True)
    return True


def _generation_seconds(run: RunDir) -> float:
    """Seconds the run's generated data took to make."""
    return sum(float(i.get("seconds") or 0) for i in run.augmentation_infos())


def _plain(run: Path, options: list[str], log: Path) -> float:
    """Train ``run`` with bench/plain_loop.py; its wall time."""
    started = time.time()
    with log.open("a", encoding="utf-8") as output:
        code = subprocess.call(
            [sys.executable, str(ROOT / "bench" / "plain_loop.py"), str(run), *options],
            cwd=ROOT,
            stdout=output,
            stderr=output,
        )
    if code:
        raise SystemExit(f"plain_loop.py failed ({code}); see {log}")
    return time.time() - started


def data_summary(run: RunDir) -> dict | None:
    """The data report's counts (facts, asked, well asked, mismatched, answers of several facts), or None."""
    report = run.read_data_report()
    if not report:
        return None
    keys = ("facts", "asked", "well_asked", "questions", "mismatched", "answers_of_several_facts", "yours")
    return {k: report.get(k) for k in keys}


def scores(report: dict) -> dict:
    """What a results row keeps of an ``eval.json``: counts per side, rates, KL, perplexity, contamination."""
    forgetting = report.get("forgetting") or {}
    return {
        "knowledge": {
            side: (report.get(side) or {}).get("knowledge_correct") for side in ("base", "open_book", "adapter")
        },
        "knowledge_of": report["base"]["knowledge_scored"],
        "retention": {side: report[side]["retention_correct"] for side in ("base", "adapter")},
        "retention_of": report["base"]["retention_scored"],
        "eos": {side: report[side]["eos_rate"] for side in ("base", "adapter")},
        "loops": {side: report[side].get("chat_looping") for side in ("base", "adapter")},
        "kl": forgetting.get("kl_mean"),
        "ppl_ratio": forgetting.get("ppl_ratio"),
        "contamination": (report.get("contamination") or {}).get("answers"),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _total(group: list[dict], key: str, side: str) -> int:
    return sum(r[key][side] or 0 for r in group)


def table_row(name: str, label: str, group: list[dict]) -> str:
    """One set's line: counts summed over the seeds, rates and times averaged, KL and kept steps per seed."""
    know = " / ".join(str(_total(group, "knowledge", side)) for side in ("base", "open_book", "adapter"))
    retention = " / ".join(str(_total(group, "retention", side)) for side in ("base", "adapter"))
    kls = " / ".join(f"{r['kl']:.3f}" for r in group)
    eos = " / ".join(f"{_mean([r['eos'][side] for r in group]):.2f}" for side in ("base", "adapter"))
    kept = ", ".join(f"{r['kept_step']}/{r['steps']}" for r in group)
    counted = [r for r in group if (r.get("loops") or {}).get("base") is not None]  # rows from before the count: –
    loops = " / ".join(str(sum(r["loops"][side] for r in counted)) if counted else "–" for side in ("base", "adapter"))
    cells = [
        name,
        label,
        str(len(group)),
        f"{know} of {sum(r['knowledge_of'] for r in group)}",
        f"{retention} of {sum(r['retention_of'] for r in group)}",
        kls,
        f"{_mean([r['ppl_ratio'] for r in group]):.2f}",
        str(sum(r["contamination"] or 0 for r in group)),
        eos,
        loops,
        str(len({q for r in group for q in r.get("probe_leaks") or []})),
        kept,
        f"{sum(bool(r['learnt']) for r in group)} of {len(group)}",
        f"{_mean([r['train_s'] for r in group]):.0f}",
        f"{_mean([r['eval_s'] for r in group]):.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def table(rows: list[dict]) -> str:
    """The markdown table, one line per set and recipe."""
    lines = [
        "| set | recipe | seeds | knowledge base / open book / adapter | retention base / adapter | KL per seed | "
        "ppl ratio | contamination | eos base / adapter | loops base / adapter | probes trained on "
        "| kept step / steps | learnt | train s | eval s |",
        "|---|---|---:|---|---|---|---:|---:|---|---|---:|---|---|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["label"]), []).append(row)
    lines += [table_row(name, label, group) for (name, label), group in groups.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the runs, results.jsonl and table.md")
    parser.add_argument("--sets", default="announcement,lookalikes", help="comma-separated test sets")
    parser.add_argument("--seeds", default="42,7,11", help="comma-separated training seeds")
    parser.add_argument("--label", default="default", help="the recipe's name in the table")
    parser.add_argument(
        "--plain",
        metavar="OPTIONS",
        help="train with bench/plain_loop.py and these options (quoted) instead of `kinject train`; the other "
        "options then go to `kinject augment`",
    )
    parser.add_argument("--questions", type=Path, help="the user's own question file, given to `kinject prepare`")
    parser.add_argument("--fresh-data", action="store_true", help="generate each run's data anew (for timing)")
    parser.add_argument("--eval", default="", metavar="OPTIONS", help="extra `kinject eval` options (quoted)")
    parser.add_argument("options", nargs="*", help="`kinject train` options of the recipe (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    for name in args.sets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if any(r["set"] == name and r["seed"] == seed and r["label"] == args.label for r in rows):
                continue
            print(f"{args.label}: {name}, seed {seed}", flush=True)
            how = Recipe(
                shlex.split(args.plain) if args.plain is not None else None,
                args.questions,
                not args.fresh_data,
                shlex.split(args.eval),
            )
            row = run_one(name, seed, args.label, args.options, args.out, how)
            rows.append(row)
            with results.open("a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")
            (args.out / "table.md").write_text(table(rows), encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
