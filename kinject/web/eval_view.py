"""The Evaluate tab and the loss plot as plain values: the scores' text, the answers' rows, the figure (no gradio)."""

from __future__ import annotations

from typing import Any

from kinject.eval.contamination import contamination_line
from kinject.eval.report import COUNTS, OF, learnt_nothing, learnt_nothing_line, no_gain_line
from kinject.runs import RunDir, RunError

from . import state

ANSWER_COLUMNS = ["id", "kind", "question or prompt", "accepted", "base", "", "adapter", " "]
ANSWER_WIDTHS = ["9%", "8%", "20%", "11%", "22%", "3%", "24%", "3%"]
SCORE_LABELS = {
    "knowledge_accuracy": "knowledge (facts of your pages)",
    "retention_accuracy": "retention (general facts and chat)",
    "knowledge_logprob": "knowledge log-prob (closer to 0 is better)",
    "eos_rate": "answers that ended their turn",
    "chat_looping": "answers caught in a loop (one phrase said over and over)",
}


def score_text(scores: dict[str, Any] | None, key: str) -> str:
    """A score rounded, with its counts beside a fraction: "0.57 (4/7)"; "–" when not measured."""
    value = (scores or {}).get(key)
    if value is None:
        return "–"
    if key in COUNTS:
        hit, n = (scores.get(k) for k in COUNTS[key])
        return f"{value:.2f} ({hit}/{n})"
    if key in OF:
        return f"{value}/{scores.get(OF[key])}"
    return f"{value:.3f}"


def eval_summary(data: dict[str, Any]) -> str:
    """The scores first: base vs adapter with counts, forgetting, and how the evaluation was run."""
    s = data.get("settings") or {}
    counts = s.get("counts") or {}
    lines = [
        f"**Evaluated** {data.get('created_at', '')} · model `{data.get('model', '')}` · "
        f"{counts.get('knowledge', 0)} knowledge and {counts.get('retention', 0)} retention probes"
        + (" (the quick set)" if s.get("quick") else "")
        + (f" · answers of at most {s['generation']['max_new_tokens']} tokens" if s.get("generation") else ""),
    ]
    if data.get("note"):
        lines.append(f"> {data['note']}")
    if learnt_nothing(s):
        lines.append(f"> ⚠️ {learnt_nothing_line(s)}")
    elif gain := no_gain_line(data.get("base"), data.get("adapter")):
        lines.append(f"> ⚠️ **{gain}**")
    lines += ["", "| score | base | adapter |", "|---|---:|---:|"]
    for key, label in SCORE_LABELS.items():
        lines.append(f"| {label} | {score_text(data.get('base'), key)} | {score_text(data.get('adapter'), key)} |")
    if data.get("open_book"):
        ob = score_text(data["open_book"], "knowledge_accuracy")
        lines.append(f"| knowledge, open book (the base with your pages in its prompt) | {ob} | |")
    f = data.get("forgetting")
    if f:
        lines += [
            "",
            f"**Forgetting:** KL(base ‖ adapter) {f['kl_mean']:.3g} nats/token (max {f['kl_max']:.3g}) · perplexity "
            f"on general text {f['base_ppl']:.1f} → {f['adapter_ppl']:.1f} (ratio {f['ppl_ratio']:.2f})",
        ]
    if contamination_line(data.get("contamination")):
        lines.append(f"**Contamination:** {contamination_line(data.get('contamination'))}")
    return "\n".join(lines)


def answer_mark(answer: dict[str, Any] | None) -> str:
    """✓ for a correct answer, ✗ for a wrong one, – when it was not scored."""
    return {True: "✓", False: "✗"}.get((answer or {}).get("correct"), "–")


def eval_answers(data: dict[str, Any]) -> list[list[str]]:
    """Every probe's answers side by side, as plain text (a table cell shows text, never renders markdown)."""
    rows = []
    for p in data.get("probes") or []:
        asked = p.get("question") if p.get("form") != "completion" else f"{p.get('prompt', '')} …"
        base, adapter = p.get("base"), p.get("adapter")
        rows.append(
            [
                p.get("id", ""),
                p.get("kind", ""),
                asked or "",
                " / ".join(p.get("answers") or []),
                (base or {}).get("text", ""),
                answer_mark(base),
                (adapter or {}).get("text", "") if adapter else "",
                answer_mark(adapter),
            ]
        )
    return rows


def show_eval(run: str | None = None) -> tuple[str, str | None, list[list[str]]]:
    """The Evaluate tab's results: scores (with counts), the chart, the answers."""
    if not run:
        return "No run selected.", None, []
    run_dir = state.run_dir(run)
    try:
        kind = run_dir.latest_eval_kind()
        data = run_dir.read_eval(kind)
        full_kept = kind != "full" and run_dir.read_eval("full") is not None
    except (OSError, RunError) as exc:  # RunDamagedError names the file and the field
        return f"The evaluation of {run} cannot be shown: {exc}", None, []
    if not data:
        return "No evaluation yet for this run: press Evaluate.", None, []
    plot = run_dir.eval_plot(kind)
    summary = eval_summary(data)
    if full_kept:
        summary = (
            f"*This is the last, {kind} evaluation. The complete full evaluation is kept (eval.json): the Runs "
            "table and the model card show that one.*\n\n" + summary
        )
    return summary, str(plot) if plot else None, eval_answers(data)


def loss_figure(run: RunDir):
    """The training loss by step: integer steps, a marker on every point (so a single point shows), 3 digits."""
    rows = [r for r in run.read_metrics() if "loss" in r and "step" in r]
    if not rows:
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    fig = Figure(figsize=(9, 3), dpi=100)
    ax = fig.subplots()
    steps, losses = [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]
    ax.plot(steps, losses, marker="o" if len(rows) <= 60 else None, markersize=3, color="#2a7ab9")
    if steps[-1] - steps[0] < 8:  # few steps: a tick on each (a locator would add fractions)
        ax.set_xticks(range(steps[0] - 1, steps[-1] + 2))
        ax.set_xlim(steps[0] - 0.5, steps[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_key(run: RunDir) -> str:
    """What the loss plot shows, so a poll redraws it only when a step was logged."""
    rows = run.read_metrics()
    return f"{run.path}:{len(rows)}:{rows[-1].get('step') if rows else ''}"


def _size_text(size: Any) -> str:
    """An evaluation's size in words: probes, answer length, KL prompts."""
    kl = f", KL on {size.prompts} general prompts" if size.prompts else ""
    return (
        f"{size.knowledge} knowledge and {size.retention} retention probes, answers of up to "
        f"{size.max_new_tokens} tokens{kl}"
    )


def full_set_time(run: RunDir, full: Any) -> str:
    """How long the full set takes on this run and machine: the last full evaluation's time, else an estimate
    from the last quick or stopped one (seconds per answer token, scaled to the full set), else a reference."""
    from .words import duration_text

    done = run.read_eval("full")
    if done and (done.get("timings") or {}).get("total_s"):
        return f"this run's last full evaluation took {duration_text(done['timings']['total_s'])}"
    for kind in ("quick", "stopped"):
        data = run.read_eval(kind)
        timings, settings = (data or {}).get("timings") or {}, (data or {}).get("settings") or {}
        counts, tokens = settings.get("counts") or {}, (settings.get("generation") or {}).get("max_new_tokens")
        answered = 2 * len(data.get("probes") or []) + counts.get("knowledge", 0) if data else 0
        spent = timings.get("probes_s", 0) + timings.get("forgetting_s", 0)
        if answered and tokens and spent:
            per_token = spent / (answered * tokens)
            estimate = timings.get("load_s", 0) + per_token * full.answers * full.max_new_tokens
            return f"up to about {duration_text(estimate)} here (scaled from this run's last {kind} evaluation)"
    return (
        "not timed for this run yet (for scale: the bundled 135M model's full set on the six sample pages took "
        "2-5 min on 2 CPU cores)"
    )


def eval_plan_text(run: RunDir, evaluation: Any, generation: Any) -> str:
    """What pressing Evaluate will run, before it runs: the quick or the full set, and how long the full set takes
    (so a CPU user does not start a quarter of an hour of answers in one click)."""
    from kinject.eval import EvalError, eval_sizes

    try:
        asked, full = eval_sizes(run, evaluation, generation)
    except (EvalError, OSError, ValueError) as exc:
        return f"Nothing to evaluate with these settings: {exc}"
    try:
        took = full_set_time(run, full)
    except (OSError, RunError) as exc:  # a damaged eval*.json (RunDamagedError names the file and the field)
        took = f"its time is unknown (an earlier evaluation is unreadable: {exc})"
    why = " (Quick: auto, and this machine has no GPU)" if evaluation.quick == "auto" else ""
    if asked.quick:
        return (
            f"**Evaluate runs the quick set**{why}: {_size_text(asked)}. The full set (Quick: off): "
            f"{_size_text(full)}; {took}."
        )
    return f"**Evaluate runs the full set**: {_size_text(full)}; {took}."
