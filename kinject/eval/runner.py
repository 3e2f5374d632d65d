"""The `evaluate` verb: base vs adapter on the run's probes, forgetting on shipped general data, the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..models.generate import Loaded, adapter_off, load_for_run
from ..runs import RunDir, open_run_tracker
from ..runtime.progress import Progress
from ..settings.fields import to_dict
from ..settings.stages import EvalConfig, GenerationConfig
from .contamination import Contamination, corpus_names, measure_contamination
from .metrics import EvalStopped, ProbeResult, measure_forgetting, probe_form, score_probes, summarize
from .open_book import open_book_probe
from .probes import KINDS, EvalError, Probe, collect_probes, corpus_texts, general_prompts, general_text
from .report import EvalReport, write_report

PPL_MAX_CHUNK = 1024  # tokens per perplexity window (the model's context when shorter)
# The quick probe set (EvalConfig.quick): per kind of probe, answer length, general prompts and their KL tokens.
QUICK = {"probes_per_kind": 4, "max_new_tokens": 32, "kl_prompts": 4, "kl_max_new_tokens": 16}


def open_book_probes(run: RunDir, probes: list[Probe], tokenizer: Any, model: Any, gen: GenerationConfig) -> dict:
    """Position -> the knowledge probe asked with the pages in the prompt, for those where a passage fits."""
    from ..models.loading import context_length

    if not run.has_corpus():
        return {}
    texts = corpus_texts(run)
    context = context_length(model.config) or 2048
    out = {}
    for i, probe in enumerate(probes):
        if probe.kind == KINDS[0]:
            asked = open_book_probe(probe, texts, tokenizer, context, gen.max_new_tokens)
            if asked is not None:
                out[i] = asked
    return out


class GroupStopped(EvalStopped):
    """A stop inside a group of probes; ``answered`` of them were answered on every side and are kept."""

    def __init__(self, answered: int):
        super().__init__("evaluation stopped")
        self.answered = answered


def answer_group(
    loaded: Any,
    results: list[ProbeResult],
    first: int,
    size: int,
    open_book: dict[int, Probe],
    gen: GenerationConfig,
    progress: Progress,
) -> None:
    """Answer ``results[first:first + size]`` with the base, the adapter and the open-book base, a batch per side.

    A stop while the base or the adapter answers keeps none of the group (raises ``GroupStopped(0)``); a stop during
    the open-book answers keeps the group without them, as those are an extra beside the comparison."""
    model, tok = loaded.model, loaded.tokenizer
    group = results[first : first + size]
    probes = [r.probe for r in group]
    try:
        with adapter_off(loaded.model):
            base = score_probes(model, tok, probes, gen, progress, side="base", first_index=first, batch_size=size)
        adapter = (
            score_probes(model, tok, probes, gen, progress, side="adapter", first_index=first, batch_size=size)
            if loaded.has_adapter
            else [None] * len(group)
        )
    except EvalStopped:
        raise GroupStopped(0) from None
    for result, b, a in zip(group, base, adapter, strict=True):
        result.base, result.adapter = b, a
    asked = [i for i in range(first, first + len(group)) if i in open_book]
    try:
        with adapter_off(loaded.model):
            answers = score_probes(
                model, tok, [open_book[i] for i in asked], gen, progress, False, "open_book", first, size
            )
    except EvalStopped:
        raise GroupStopped(len(group)) from None
    for i, answer in zip(asked, answers, strict=True):
        results[i].open_book = answer


def is_quick(config: EvalConfig) -> bool:
    """Whether ``config`` asks for the quick probe set here ('auto': on a machine without CUDA)."""
    if config.quick != "auto":
        return config.quick == "on"
    import torch

    return not torch.cuda.is_available()


@dataclass
class _Plan:
    """What one evaluation asks: its probes, the general prompts for forgetting, and how long answers may be."""

    probes: list[Probe]
    source: str
    has_adapter: bool
    forgetting_on: bool
    prompts: list[Any]
    quick: bool
    gen: GenerationConfig
    kl_tokens: int


def _plan(run: RunDir, config: EvalConfig, gen: GenerationConfig, progress: Progress) -> _Plan:
    """The probes and prompts to answer (the quick set cut to ``QUICK``); raises when there is nothing to do."""
    plan = _full_plan(run, config, gen, progress)
    return _quick_plan(plan) if is_quick(config) else plan


def _full_plan(run: RunDir, config: EvalConfig, gen: GenerationConfig, progress: Progress) -> _Plan:
    """The full set's probes and prompts; raises when there is nothing to do."""
    probes, source = collect_probes(run, config, progress)
    has_adapter = run.has_adapter()
    forgetting_on = config.forgetting and has_adapter
    prompts = general_prompts() if forgetting_on else []
    if not probes and not forgetting_on:
        raise EvalError(
            "nothing to evaluate: no probes (give --probes, --auto-probes or keep retention) and no forgetting"
        )
    return _Plan(probes, source, has_adapter, forgetting_on, prompts, False, gen, config.kl_max_new_tokens)


def _quick_plan(plan: _Plan) -> _Plan:
    """``plan`` cut to the quick set (``QUICK``): fewer probes and prompts, shorter answers."""
    n = QUICK["probes_per_kind"]
    return replace(
        plan,
        probes=[p for kind in KINDS for p in [q for q in plan.probes if q.kind == kind][:n]],
        prompts=plan.prompts[: QUICK["kl_prompts"]],
        quick=True,
        gen=replace(plan.gen, max_new_tokens=min(plan.gen.max_new_tokens, QUICK["max_new_tokens"])),
        kl_tokens=min(plan.kl_tokens, QUICK["kl_max_new_tokens"]),
    )


@dataclass
class EvalSize:
    """How much one evaluation asks, known before any model loads: what the app says before it runs."""

    knowledge: int
    retention: int
    prompts: int  # general prompts for KL (0: forgetting not measured)
    max_new_tokens: int
    quick: bool
    open_book: bool  # the knowledge probes are also answered with the pages in the prompt

    @property
    def answers(self) -> int:
        """Answers generated at most: base and adapter per probe, the open-book base per knowledge probe, and the
        base's answer per general prompt."""
        return (3 if self.open_book else 2) * self.knowledge + 2 * self.retention + self.prompts


def eval_sizes(run: RunDir, config: EvalConfig, gen: GenerationConfig | None = None) -> tuple[EvalSize, EvalSize]:
    """The size of the evaluation ``config`` asks of ``run`` and of its full set (the same unless it is quick), from
    one collection of its probes; raises ``EvalError`` when there is nothing to do."""
    full = _full_plan(run, config, gen or GenerationConfig(), Progress())
    asked = _quick_plan(full) if is_quick(config) else full
    open_book = config.open_book and run.has_corpus()

    def size(plan: _Plan) -> EvalSize:
        knowledge = sum(p.kind == KINDS[0] for p in plan.probes)
        retention = len(plan.probes) - knowledge
        return EvalSize(knowledge, retention, len(plan.prompts), plan.gen.max_new_tokens, plan.quick, open_book)

    return size(asked), size(full)


def _answer_all(
    loaded: Any,
    results: list[ProbeResult],
    batch: int,
    open_book: dict[int, Probe],
    gen: GenerationConfig,
    progress: Progress,
) -> tuple[list[ProbeResult], int, bool]:
    """Answer the probes group by group; returns the results kept, how many were answered, and whether stopped
    (a probe only one side answered would compare unequal sets, so a stop keeps whole groups)."""
    answered, stopped = 0, False
    try:
        for first in range(0, len(results), batch):
            answer_group(loaded, results, first, batch, open_book, gen, progress)
            answered = min(first + batch, len(results))
    except GroupStopped as exc:
        stopped = True
        answered += exc.answered
        if not answered:
            raise EvalStopped("evaluation stopped before any probe was answered; nothing was written") from None
        results = results[:answered]
    return results, answered, stopped


def _settings(
    config: EvalConfig, plan: _Plan, chat_model: bool, meta: dict[str, Any], results: list[ProbeResult]
) -> dict[str, Any]:
    """The report's record of how it was made (decoding, probes, the adapter's step and the guard's verdict)."""
    gen = plan.gen
    return {
        "generation": to_dict(gen),
        "greedy": gen.greedy,
        "probes": plan.source,
        "probe_file": config.probes,
        "auto_probes": config.auto_probes,
        "retention": config.retention,
        "forgetting": config.forgetting,
        "kl_max_new_tokens": plan.kl_tokens,
        "quick": plan.quick,
        "probes_planned": len(plan.probes),
        "chat_template": chat_model,
        "adapter_status": meta.get("status"),
        "adapter_step": meta.get("step"),
        "adapter_kept_step": meta.get("kept_step"),  # the guard's choice: the step whose weights these are
        "guard": {k: (meta.get("guard") or {}).get(k) for k in ("learnt", "reason")} if meta.get("guard") else None,
        "counts": {kind: sum(r.probe.kind == kind for r in results) for kind in KINDS},
    }


def evaluate(
    run_dir: str | Path | RunDir,
    config: EvalConfig | None = None,
    progress: Progress | None = None,
    generation: GenerationConfig | None = None,
    report_to: str | None = None,
) -> EvalReport:
    """Answer the probes with the base and the adapter, measure forgetting, write eval.json/.md/.png, and track the
    scores (``report_to``; unset: what the run's training tracked with) beside the training's curves.

    Knowledge probes (a probe file, or completion probes cut from the run's corpus) and retention probes (shipped
    with kinject) are answered by the base model and by the adapter from one model load: the base is the same
    PeftModel with its adapter switched off, so both sides see identical weights, prompts and decoding.
    A run without an adapter is evaluated on the base alone (``adapter`` and ``forgetting`` null, ``note`` says
    so). Probes are answered in groups of ``config.eval_batch_size``, each group by both sides (one padded batch a
    side) before the next, so ``progress.should_stop()`` (checked between batches) keeps the groups answered so
    far: they are scored and written, with ``stopped`` set and a note; a stop before the first group was answered
    on both sides raises ``EvalStopped`` and writes nothing. ``config.quick`` evaluates a small set with short
    answers (``QUICK``).
    """
    run = RunDir(run_dir).require()
    config = config or EvalConfig()
    asked = generation or GenerationConfig()
    progress = progress or Progress()
    started = time.time()
    plan = _plan(run, config, asked, progress)
    has_adapter, gen = plan.has_adapter, plan.gen
    note = None if has_adapter else "no adapter in this run: the base model was evaluated alone"

    loaded = _load(run, has_adapter, progress)
    model, tok = loaded.model, loaded.tokenizer
    chat_model = bool(getattr(tok, "chat_template", None))
    timings = {"load_s": time.time() - started}

    t0 = time.time()
    open_book = open_book_probes(run, plan.probes, tok, model, gen) if config.open_book else {}
    total = len(plan.probes) * (2 if has_adapter else 1) + len(open_book) + len(plan.prompts)
    progress.start("evaluate", total=total, unit="answer")
    results = [ProbeResult(p, probe_form(p, chat_model)) for p in plan.probes]
    results, answered, stopped = _answer_all(loaded, results, config.eval_batch_size, open_book, gen, progress)
    timings["probes_s"] = time.time() - t0
    contamination = _contamination(run, results) if has_adapter else None
    forgetting = None
    if plan.forgetting_on and not stopped:
        t0 = time.time()
        forgetting = _forgetting(loaded, plan, config, progress)
        stopped = forgetting is None
        timings["forgetting_s"] = time.time() - t0
    progress.finish()
    timings["total_s"] = time.time() - started
    if stopped and not answered and forgetting is None:
        raise EvalStopped("evaluation stopped before anything was measured; nothing was written")
    if stopped:
        note = _with_stop_note(note, plan, answered, forgetting)

    meta = run.read_adapter_meta() if has_adapter else {}
    report = EvalReport(
        run_dir=str(run),
        model=loaded.model_name,
        has_adapter=has_adapter,
        base=summarize(results, "base"),
        adapter=summarize(results, "adapter") if has_adapter else None,
        forgetting=forgetting,
        probes=results,
        settings=_settings(config, plan, chat_model, meta, results),
        timings={k: round(v, 2) for k, v in timings.items()},
        note=note,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        stopped=stopped,
        contamination=contamination,
        open_book=summarize(results, "open_book") if open_book else None,
    )
    run.update_config(eval=to_dict(config), generation=to_dict(asked))
    write_report(report, run)
    track_scores(run, report, meta, report_to, progress)
    return report


def _load(run: RunDir, with_adapter: bool, progress: Progress) -> Loaded:
    """The run's model (with its adapter when it has one) and tokenizer, loaded once for both sides."""
    progress.start("load model", total=None)
    loaded = load_for_run(run, with_adapter=with_adapter, progress=progress)
    progress.finish()
    return loaded


def _contamination(run: RunDir, results: list[ProbeResult]) -> Contamination | None:
    """How often the adapter names the corpus's names in general answers; None for a run without a corpus."""
    if not run.has_corpus():
        return None
    return measure_contamination(results, corpus_names(list(run.load_corpus()["text"])))


def track_scores(
    run: RunDir, report: EvalReport, meta: dict[str, Any], report_to: str | None, progress: Progress
) -> None:
    """The report's scores into the run's tracked curves, at the step whose adapter was evaluated (the training's
    tracked run goes on); ``report_to`` unset: the training's choice ('trackio' for a run never trained)."""
    report_to = report_to or run.section("train").get("report_to") or "trackio"
    tracker = open_run_tracker(run, report_to, resume=True, warn=progress.log)
    try:
        tracker.log(score_metrics(report), meta.get("kept_step") or meta.get("step") or 0)
    finally:
        tracker.finish()


def score_metrics(report: EvalReport) -> dict[str, Any]:
    """The scores worth a curve: knowledge (closed book, open book, the base's), retention, KL, perplexity ratio and
    contamination."""
    out: dict[str, Any] = {}
    for side, scores in (("adapter", report.adapter), ("base", report.base), ("open_book", report.open_book)):
        if scores is not None:
            out[f"eval/{side}/knowledge_accuracy"] = scores.knowledge_accuracy
            out[f"eval/{side}/knowledge_logprob"] = scores.knowledge_logprob
            if side != "open_book":
                out[f"eval/{side}/retention_accuracy"] = scores.retention_accuracy
    if report.forgetting is not None:
        out["eval/kl_mean"] = report.forgetting.kl_mean
        out["eval/ppl_ratio"] = report.forgetting.ppl_ratio
    if report.contamination is not None:
        out["eval/contaminated_answers"] = report.contamination.answers
    return out


def _with_stop_note(note: str | None, plan: _Plan, answered: int, forgetting: Any) -> str:
    """``note`` with what a stopped evaluation covers."""
    skipped = " and forgetting was not measured" if plan.forgetting_on and forgetting is None else ""
    stop_note = f"stopped after {answered} of {len(plan.probes)} probes: the scores cover those{skipped}"
    return f"{note}; {stop_note}" if note else stop_note


def _forgetting(loaded: Any, plan: _Plan, config: EvalConfig, progress: Progress) -> Any:
    """KL and perplexity ratio on the shipped general data; None when stopped."""
    from ..models.loading import context_length

    chunk = min(context_length(loaded.model.config) or PPL_MAX_CHUNK, PPL_MAX_CHUNK)
    try:
        return measure_forgetting(
            loaded, plan.prompts, general_text(), plan.kl_tokens, chunk, progress, config.eval_batch_size
        )
    except EvalStopped:
        return None
