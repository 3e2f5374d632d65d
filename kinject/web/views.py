"""What the web face shows, as plain text and table rows: no gradio here, so each view is tested without a browser.

A view that needs a run looks it up with ``state.run_dir`` and raises ``state.WebError`` with a message for the
user; the gradio side shows that message as an error.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from kinject.runs import RunDamagedError, RunDir, RunError
from kinject.runtime.jobs import JobState, describe_job
from kinject.settings.services import AppConfig

from . import state
from .eval_view import SCORE_LABELS, answer_mark, score_text
from .words import app_text, duration_text

SOURCE_COLUMNS = ["status", "input", "title", "chars", "tokens", "error"]
AUGMENT_COLUMNS = ["kind", "passage", "asked or instruction", "generated", "kept", "why not"]
SOURCE_AUGMENT_COLUMNS = ["passage", "kind", "asked or instruction", "generated", "kept", "why not"]
RUNS_COLUMNS = ["run", "date", "model", "preset", "steps", "final loss", "knowledge", "retention", "KL", "status"]
RUNS_WIDTHS = ["11%", "10%", "12%", "8%", "6%", "6%", "15%", "15%", "7%", "10%"]  # every column in 1400 px


# --- Jobs: the status area -----------------------------------------------------------------------------------------
def job_line(job: JobState) -> str:
    """What a job does or did: its kind and run, its phase with count/total while active, and the ETA."""
    if not job.active:
        job = JobState(**{**job.to_dict(), "phase": "", "phase_total": 0})
    line = f"{job.status}: {describe_job(job)}"
    return line + (f" · ETA {duration_text(job.eta_s)}" if job.active and job.eta_s else "")


def training_line(job: JobState) -> str:
    """The training numbers of a run's last job (step, epoch, loss, speed, memory), rounded; "" before training."""
    if not job.total:
        return ""
    parts = [f"step {job.step}/{job.total}", f"epoch {job.epoch:.2f}"]
    if job.loss is not None:
        parts.append(f"loss {job.loss:.3f}")
    if job.tokens_per_s and job.kind == "train" and job.active:
        parts.append(f"{job.tokens_per_s:,.0f} tokens/s")
    if job.peak_memory_mb:
        parts.append(f"peak memory {job.peak_memory_mb:,.0f} MB")
    return "Training: " + " · ".join(parts)


def status_text(name: str | None) -> str:
    """The status area: the job running now (whatever its run) and the selected run's last job."""
    lines = []
    live = state.JOBS.state()
    if live.active and (not name or Path(live.run_dir).name != name):
        lines.append(f"**Running now:** {job_line(live)}")
    if name:
        run = state.run_dir(name)
        try:
            job = state.JOBS.status_of(run)
        except RunDamagedError as exc:
            lines.append(damaged_line(name, exc))
            return "\n\n".join(lines)
        if job is None:
            lines.append(f"**{name}**: prepared, not trained yet.")
        else:
            lines.append(f"**{name}** · {job_line(job)}")
            if training := training_line(job):
                lines.append(training)
            if job.error:
                lines.append(f"**Error:** {app_text(job.error)}")
            elif job.message:
                lines.append(app_text(job.message))
    return "\n\n".join(lines) or "No run selected."


def damaged_line(name: str, exc: RunDamagedError) -> str:
    """The status area's line for a run whose file ``exc`` names is damaged (the other runs are unaffected)."""
    return f"**{name}** cannot be used: {app_text(str(exc))}"


def damage_text(run: RunDir, exc: RunError) -> str:
    """A damaged run as the Runs table's status cell says it: the file within the run, the field and the fault."""
    if not isinstance(exc, RunDamagedError):
        return f"unreadable: {exc}"
    where = exc.path.relative_to(run.path) if exc.path.is_relative_to(run.path) else exc.path
    return f"damaged: {where}: {exc.detail}"


def must_wait(action: str) -> str | None:
    """Why ``action`` must wait, naming the job that holds the model, or None when nothing runs."""
    if not state.JOBS.running():
        return None
    job = state.JOBS.state()
    eta = f", about {duration_text(job.eta_s)} left" if job.eta_s else ""
    return f"{action} must wait: {describe_job(job)} is running{eta}. Press Stop to stop it, or wait."


def fetch_policy_text(operator: AppConfig) -> str:
    """What the server may fetch, as the operator set it at launch (shown read-only in the Prepare tab)."""
    how = "`--allow-private-urls` / `KINJECT_ALLOW_PRIVATE_URLS=1`, `--allowed-networks` / `KINJECT_ALLOWED_NETWORKS`"
    if operator.allow_private_urls:
        return f"**Private and loopback addresses: allowed** by the operator at launch ({how})."
    networks = ", ".join(operator.allowed_networks)
    except_ = f", except {networks} (allowed by the operator)" if networks else ""
    return (
        f"Private, loopback and link-local addresses are refused{except_}. Only the operator can change this, at "
        f"launch ({how})."
    )


def sources_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """The Prepare tab's table: one row per source, in ``SOURCE_COLUMNS``."""
    return [[r.get(c, "") for c in SOURCE_COLUMNS] for r in rows]


# --- Runs tab ------------------------------------------------------------------------------------------------------
def run_row(name: str) -> list[Any]:
    """One run's row in the Runs tab: when, what model and recipe, how far it trained, and its scores."""
    run = RunDir(state.RUNS_ROOT / name)
    config = run.read_config()
    job = state.JOBS.status_of(run)
    meta = run.read_adapter_meta() if run.has_adapter() else {}
    ev = run.read_eval() or {}
    train = config.get("train") or {}
    losses = [r["loss"] for r in run.read_metrics() if "loss" in r]
    steps = f"{meta['step']}/{meta.get('total_steps', '?')}" if meta.get("step") is not None else ""
    if not steps and job is not None and job.total:
        steps = f"{job.step}/{job.total}"

    which = {"quick": " (quick)", "stopped": " (stopped)"}.get(RunDir.eval_kind(ev), "") if ev else ""

    def pair(key: str) -> str:
        base, adapter = score_text(ev.get("base"), key), score_text(ev.get("adapter"), key)
        return "" if not ev else (f"{base} → {adapter}" if ev.get("adapter") else base) + which

    kl = (ev.get("forgetting") or {}).get("kl_mean")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.config_path.stat().st_mtime))
    return [
        name,
        when,
        short_model((config.get("model") or {}).get("model", "")),
        train.get("preset", ""),
        steps,
        f"{losses[-1]:.3f}" if losses else "",
        pair("knowledge_accuracy"),
        pair("retention_accuracy"),
        "" if kl is None else f"{kl:.3g}",
        job.status if job else "prepared",
    ]


def short_model(model: str) -> str:
    """A model as the Runs table names it: a Hub id or alias as it is, a local folder by its last part."""
    return Path(model).name if model.startswith(("/", "./", "~")) else model


def runs_table() -> list[list[Any]]:
    """Every run, newest first; a damaged run says which file and field instead of hiding the others (its
    readers raise RunDamagedError for any file that does not hold what kinject writes)."""
    rows = []
    for name in state.list_runs():
        try:
            rows.append(run_row(name))
        except RunError as exc:
            rows.append([name, *[""] * (len(RUNS_COLUMNS) - 2), damage_text(RunDir(state.RUNS_ROOT / name), exc)])
        except OSError as exc:  # the folder went away or became unreadable while the table was made
            rows.append([name, *[""] * (len(RUNS_COLUMNS) - 2), f"unreadable: {exc}"])
    return rows


def compare_runs(first: str | None = None, second: str | None = None) -> str:
    """Two runs' settings and evaluations side by side, then each probe both answered. A damaged run is refused
    with the file and field its reader names."""
    if not first or not second:
        return "Choose two runs to compare."
    data = []
    for name in (first, second):
        run = state.run_dir(name)
        try:
            data.append((run.read_config(), run.read_eval() or {}, run_row(name)))
        except (OSError, RunError) as exc:
            raise state.WebError(app_text(f"Run {name} cannot be compared: {exc}")) from exc
    head = ["model", "preset", "steps", "final loss"]
    lines = [f"| | {first} | {second} |", "|---|---|---|"]
    for i, label in enumerate(head, start=2):
        lines.append(f"| {label} | {data[0][2][i]} | {data[1][2][i]} |")
    for key, label in SCORE_LABELS.items():
        cells = [score_text(ev.get("adapter") or ev.get("base"), key) if ev else "not evaluated" for _, ev, _ in data]
        lines.append(f"| {label} (adapter) | {cells[0]} | {cells[1]} |")
    kls = [(ev.get("forgetting") or {}).get("kl_mean") for _, ev, _ in data]
    lines.append("| KL(base ‖ adapter) | " + " | ".join("–" if k is None else f"{k:.3g}" for k in kls) + " |")
    answers = [{p["id"]: p for p in ev.get("probes") or [] if "id" in p} for _, ev, _ in data]
    shared = [pid for pid in answers[0] if pid in answers[1]]
    if shared:
        lines += ["", "| probe (kind) | " + f"{first} | {second} |", "|---|---|---|"]
        for pid in shared:
            cells = []
            for side in answers:
                answer = side[pid].get("adapter") or side[pid].get("base") or {}
                cells.append(f"{answer_mark(answer)} {cell_text(answer.get('text', ''))}")
            lines.append(f"| {cell_text(pid)} ({answers[0][pid].get('kind', '')}) | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def cell_text(text: str, limit: int = 160) -> str:
    """Text safe inside a markdown table cell: cut, one line, markdown characters escaped."""
    text = " ".join((text or "").split())
    text = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


# --- What training sees: augmentation and sources ------------------------------------------------------------------
def augmentation_table(run: str | None = None) -> list[list[Any]]:
    """Every generated row of the run's augmentation (newest set of each kind), kept or not, and why."""
    if not run:
        return []
    run_dir = state.run_dir(run)
    rows, seen = [], set()
    for info in run_dir.augmentation_infos():
        if info.get("kind") in seen:
            continue
        seen.add(info.get("kind"))
        loaded = run_dir.load_augmentation(info["key"])
        for r in loaded[0] if loaded else []:
            asked = r.get("question") or r.get("instruction", "")
            made = r.get("text") or r.get("answer", "")
            why = r.get("reason") or ""
            if not why and r.get("teacher_reason"):  # answers "distill": the source's words stood in
                why = f"the generator's answer was not used ({r['teacher_reason']}); the source's words are the answer"
            rows.append([r["kind"], r.get("passage", ""), asked, made, "yes" if r.get("kept") else "no", why])
    return rows


def questions_text(rows: list[dict[str, Any]]) -> str:
    """The user's own question-answer pairs a prepare read, and each one the pages do not support ("" for none)."""
    if not rows:
        return ""
    warned = [r for r in rows if r.get("warning")]
    lines = [
        f"{len(rows)} question-answer pairs of your own" + (f", {len(warned)} with a warning:" if warned else ".")
    ]
    lines += [f"- {cell_text(r['file'])}:{r['line']}: {cell_text(r['warning'])}" for r in warned[:20]]
    return "\n".join(lines) + "\n\n"


def data_report_text(run: str | None = None) -> str:
    """The run's data report (what the kept questions ask, fact by fact) as Markdown, or why there is none."""
    if not run:
        return ""
    from kinject.augment import format_report

    report = state.run_dir(run).read_data_report()
    if report is None:
        return "No data report yet: it is written when the training data is generated (Start, or `kinject augment`)."
    return format_report(report)


def source_names(run: str | None = None) -> list[str]:
    """The selected run's sources that gave text, for the Sources view."""
    if not run:
        return []
    return [r["input"] for r in state.run_dir(run).read_sources() if r.get("status") == "ok"]


def source_view(run: str | None = None, source: str | None = None) -> tuple[str, list[list[Any]]]:
    """One source's extracted text as training will see it, and what augmentation generated from its passages.

    The text is the corpus's ``text`` column and nothing else: that is what training reads (a page's heading,
    when it has one, is in it already as its first paragraph: adding the ``title`` before it showed it twice)."""
    if not run or not source:
        return "", []
    run_dir = state.run_dir(run)
    try:
        docs = [d for d in run_dir.load_corpus().to_list() if d.get("source") == source]
    except RunError as exc:
        raise state.WebError(app_text(str(exc))) from exc
    if not docs:
        return f"(no text kept from {source}: it was a duplicate, or its text did not pass the cleaning)", []
    from kinject.augment import split_passages

    everything = run_dir.load_corpus().to_list()
    passages = {p.id for p in split_passages(everything) if p.source == source}
    rows = [r[1:2] + r[:1] + r[2:] for r in augmentation_table(run) if r[1] in passages]
    return "\n\n".join(d["text"] for d in docs), rows


def card_preview(run: str | None = None, repo: str = "") -> str:
    """The model card the push would upload (sources, training, evaluation, usage), as Markdown shows it: its YAML
    metadata header in a code block above its body (Markdown would run it together), after a warning when it would
    publish sources that are no public web pages, and named after the run while the Repo field is empty."""
    from kinject.sharing.card import front_matter, model_card, non_public_sources, non_public_warning

    run_dir = state.run_dir(run)
    if not run_dir.has_adapter():
        return "This run has no adapter yet: train it first (Train tab)."
    repo = (repo or "").strip()
    try:
        head, body = front_matter(model_card(run_dir, repo or f"OWNER/{run_dir.name}"))
        sources = run_dir.read_sources()
    except RunError as exc:
        raise state.WebError(app_text(f"No model card for run {run_dir.name}: {exc}")) from exc
    parts = []
    if warning := non_public_warning(non_public_sources(sources)):
        parts.append(f"**Warning:** {warning}")
    if not repo:
        parts.append(
            f"*The Repo field (Publish tab) is not set yet: this preview calls the repository OWNER/{run_dir.name}. "
            "Give the repository to push to, as owner/name, before pushing.*"
        )
    if head:
        parts.append(f"Hub metadata (the card's YAML header):\n\n{_fenced(head, 'yaml')}")
    return "\n\n".join([*parts, body])


def _fenced(text: str, language: str = "") -> str:
    """``text`` in a Markdown code fence longer than any run of backticks in it."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}"
