"""The evaluation report: ``EvalReport`` and its three renderings (eval.json, eval.md, eval.png), and the table
the CLI prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..runs import RunDir
from .contamination import Contamination, contamination_line
from .metrics import Forgetting, ProbeResult, Scores


@dataclass
class EvalReport:
    """Everything ``eval.json`` holds; ``adapter`` and ``forgetting`` are None for a run without an adapter."""

    run_dir: str
    model: str
    has_adapter: bool
    base: Scores
    adapter: Scores | None
    forgetting: Forgetting | None
    probes: list[ProbeResult]
    settings: dict[str, Any]
    timings: dict[str, float]
    note: str | None = None
    created_at: str = ""
    stopped: bool = False  # stopped by the user: the scores cover the probes answered before the stop
    contamination: Contamination | None = None  # corpus names in the adapter's general answers
    open_book: Scores | None = None  # the base with the pages in its prompt, on the knowledge probes

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "model": self.model,
            "has_adapter": self.has_adapter,
            "note": self.note,
            "created_at": self.created_at,
            "stopped": self.stopped,
            "base": asdict(self.base),
            "adapter": asdict(self.adapter) if self.adapter else None,
            "forgetting": asdict(self.forgetting) if self.forgetting else None,
            "contamination": asdict(self.contamination) if self.contamination else None,
            "open_book": asdict(self.open_book) if self.open_book else None,
            "settings": self.settings,
            "timings": self.timings,
            "probes": [r.to_dict() for r in self.probes],
        }


SCORE_ROWS = (
    "knowledge_accuracy",
    "retention_accuracy",
    "knowledge_logprob",
    "retention_logprob",
    "eos_rate",
    "chat_looping",
)
FORGETTING_ROWS = ("kl_mean", "ppl_ratio", "kl_max", "base_ppl", "adapter_ppl")
# A score shown with its counts: the two fields it is the share of ("0.57 (4/7)"), or a count shown of its whole.
COUNTS = {
    "knowledge_accuracy": ("knowledge_correct", "knowledge_scored"),
    "retention_accuracy": ("retention_correct", "retention_scored"),
    "eos_rate": ("chat_ended", "chat_answers"),
}
OF = {"chat_looping": "chat_answers"}


def learnt_nothing(settings: dict[str, Any]) -> bool:
    """Whether the forgetting guard found that the evaluated adapter learnt nothing within its bound."""
    return ((settings or {}).get("guard") or {}).get("learnt") is False


def learnt_nothing_line(settings: dict[str, Any]) -> str:
    """The guard's "learnt nothing" reason after a bold lead saying so (its own lead left out, said once)."""
    reason = str(((settings or {}).get("guard") or {}).get("reason") or "")
    lead = "learnt nothing within the forgetting bound: "
    reason = reason[len(lead) :] if reason.startswith(lead) else reason
    return f"**The adapter learnt nothing within the forgetting bound:** {reason}"


def no_gain_line(base: dict[str, Any] | None, adapter: dict[str, Any] | None) -> str:
    """A sentence when the adapter answers no more knowledge probes than the base ("" otherwise), from the two
    sides' scores as eval.json holds them: whatever its likelihoods say, such an adapter taught nothing a user can
    ask for."""
    if not base or not adapter or not base.get("knowledge_scored"):
        return ""
    hit, base_hit = adapter.get("knowledge_correct", 0), base.get("knowledge_correct", 0)
    if hit > base_hit:
        return ""
    n = base["knowledge_scored"]
    return (
        f"The adapter answers no more knowledge probes than the base ({hit} of {n} against {base_hit} of {n}): "
        "nothing it learnt can be asked for yet."
    )


def no_gain(report: EvalReport) -> str:
    """``no_gain_line`` of a report."""
    return no_gain_line(asdict(report.base), asdict(report.adapter) if report.adapter else None)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _cell(scores: Scores | None, key: str) -> str:
    if scores is None:
        return "n/a"
    value = getattr(scores, key)
    if key in COUNTS and value is not None:
        hit, n = (getattr(scores, k) for k in COUNTS[key])
        return f"{_num(value)} ({hit}/{n})"
    if key in OF:
        return f"{value}/{getattr(scores, OF[key])}"
    return _num(value)


def format_table(report: EvalReport) -> str:
    """The scores as an aligned plain-text table (what the CLI prints)."""
    rows = [("metric", "base", "adapter")]
    rows += [(key, _cell(report.base, key), _cell(report.adapter, key)) for key in SCORE_ROWS]
    if report.open_book:
        rows.append(("knowledge_accuracy, open book", _cell(report.open_book, "knowledge_accuracy"), ""))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}" for r in rows]
    if report.forgetting:
        lines.append("")
        lines += [f"{key:<{width[0]}}  {_num(getattr(report.forgetting, key)):>{width[1]}}" for key in FORGETTING_ROWS]
    if report.contamination and report.contamination.of:
        lines += ["", f"contamination: {contamination_line(asdict(report.contamination))}"]
    if report.note:
        lines += ["", f"note: {report.note}"]
    if gain := no_gain(report):
        lines += ["", gain]
    return "\n".join(lines)


def _md_text(text: str | None, limit: int = 400) -> str:
    if text is None:
        return ""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _mark(correct: bool | None) -> str:
    return {True: "✓", False: "✗", None: "–"}[correct]


def format_markdown(report: EvalReport) -> str:
    """``eval.md``: the score table, forgetting, and every probe's answers side by side."""
    s = report.settings
    g = s["generation"]
    decoding = "greedy" if s["greedy"] else f"temperature {g['temperature']}, top_p {g['top_p']}"
    if not report.has_adapter:
        adapter = "no adapter"
    elif s["adapter_step"] is None:
        adapter = "adapter (no training metadata)"
    elif s.get("adapter_kept_step") not in (None, s["adapter_step"]):
        adapter = (
            f"adapter of step {s['adapter_kept_step']} (kept by the forgetting guard; training ran to step "
            f"{s['adapter_step']}, {s['adapter_status']})"
        )
    else:
        adapter = f"adapter at step {s['adapter_step']} ({s['adapter_status']})"
    lines = [
        f"# Evaluation of `{Path(report.run_dir).name}`",
        "",
        f"Model `{report.model}`, {adapter}. Probes: {s['probes']} ({s['counts']['knowledge']} knowledge, "
        f"{s['counts']['retention']} retention{', the quick set' if s.get('quick') else ''}). Decoding: {decoding}, "
        f"max_new_tokens {g['max_new_tokens']}. {report.created_at}, {report.timings.get('total_s', 0):.0f} s.",
        "",
    ]
    if report.note:
        lines += [f"> {report.note}", ""]
    if learnt_nothing(s):
        lines += [f"> {learnt_nothing_line(s)}", ""]
    elif gain := no_gain(report):
        lines += [f"> **{gain}**", ""]
    lines += ["| metric | base | adapter |", "|---|---:|---:|"]
    lines += [f"| {key} | {_cell(report.base, key)} | {_cell(report.adapter, key)} |" for key in SCORE_ROWS]
    if report.open_book:
        ob = _cell(report.open_book, "knowledge_accuracy")
        lines.append(f"| knowledge_accuracy, open book (the base with the pages in its prompt) | {ob} | |")
    lines += [
        "",
        "Accuracy: the answer contains an accepted alias. Log-prob: mean per-token log-probability of the best "
        "accepted answer, teacher-forced after the question (with the probe's prompt as the answer's start when it "
        "has one); closer to 0 is better. eos_rate: share of chat answers that ended their turn within "
        "max_new_tokens. chat_looping: chat answers that end by saying one phrase three times or more (a turn that "
        "did not end because the model loops, not because it had more to say).",
    ]
    if report.forgetting:
        f = report.forgetting
        lines += ["", "| forgetting | value |", "|---|---:|"]
        lines += [f"| {key} | {_num(getattr(f, key))} |" for key in FORGETTING_ROWS]
        lines += [
            "",
            f"KL(base ‖ adapter) averaged over {f.kl_tokens} tokens of the base model's own answers to "
            f"{len(f.kl_per_prompt)} general prompts; perplexities on {f.ppl_tokens} tokens of general text.",
        ]
    if report.contamination and report.contamination.of:
        lines += [
            "",
            f"Contamination: {contamination_line(asdict(report.contamination))}: names of the corpus in the "
            "adapter's answers to general (retention) probes that the base's answers and the questions do not hold.",
        ]
    lines += [
        "",
        "## Answers",
        "",
        "| id | kind | question or prompt | accepted | base | | adapter | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report.probes:
        p = r.probe
        asked = p.question if r.form != "completion" else f"{p.prompt} …"
        cells = []
        for answer in (r.base, r.adapter):
            cells += [_md_text(answer.text), _mark(answer.correct)] if answer else ["", _mark(None)]
        lines.append(
            f"| {_md_text(p.id)} | {p.kind} | {_md_text(asked)} | {_md_text(' / '.join(p.answers))} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot_report(report: EvalReport, path: Path) -> None:
    """``eval.png``: accuracy bars base vs adapter, and the two forgetting numbers (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    acc, kl, ppl = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2, 1, 1]})
    labels = ["knowledge", "retention"]
    sides = [("base", report.base, "#8c8c8c")]
    if report.adapter:
        sides.append(("adapter", report.adapter, "#2a7ab9"))
    width = 0.8 / len(sides)
    for k, (name, scores, color) in enumerate(sides):
        values = [scores.knowledge_accuracy, scores.retention_accuracy]
        xs = [i + (k - (len(sides) - 1) / 2) * width for i in range(len(labels))]
        bars = acc.bar(xs, [v or 0.0 for v in values], width, label=name, color=color)
        for bar, v in zip(bars, values, strict=True):
            acc.annotate(_num(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    acc.set_xticks(range(len(labels)), labels)
    acc.set_ylim(0, 1.3)
    acc.set_ylabel("accuracy")
    acc.set_title("probe accuracy")
    acc.legend(loc="upper center", ncol=2, frameon=False)
    f = report.forgetting
    for ax, title, value, ref in (
        (kl, "KL(base ‖ adapter)", f and f.kl_mean, 0.0),
        (ppl, "perplexity ratio", f and f.ppl_ratio, 1.0),
    ):
        ax.set_title(title)
        ax.set_xticks([])
        if value is None:
            ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.bar([0], [value], 0.5, color="#c0504d")
        ax.axhline(ref, color="black", linewidth=0.8, linestyle="--")
        ax.annotate(_num(value), (0, value), ha="center", va="bottom")
        ax.set_xlim(-1, 1)
        ax.set_ylim(min(0.0, value) * 1.2, max(value * 1.25, ref * 1.25, 1e-6))
    # No run name in the picture: a copied or renamed run would show its old one.
    kind = "the quick set" if report.settings.get("quick") else "the full set"
    fig.suptitle(f"Base vs adapter, {kind}" + (" (stopped)" if report.stopped else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")


def write_report(report: EvalReport, run: RunDir) -> None:
    """Write the report into the run folder (eval.png, eval.md, then eval.json; each atomically)."""
    run.write_eval(report.to_dict(), format_markdown(report), lambda path: plot_report(report, path))


def read_report(run: RunDir) -> dict[str, Any] | None:
    """A run's evaluation as a dict (``eval.json``), or None when it has not been evaluated."""
    return run.read_eval()
