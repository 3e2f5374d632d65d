"""The `evaluate` verb: base vs adapter on the run's probes, forgetting on shipped general data, the report."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import EvalConfig, GenerationConfig, to_dict
from ..progress import Progress
from ..runs import RunDir
from .contamination import corpus_names, measure_contamination
from .metrics import EvalStopped, ProbeResult, measure_forgetting, probe_form, score_probes, summarize
from .open_book import open_book_probe
from .probes import KINDS, EvalError, Probe, collect_probes, corpus_texts, general_prompts, general_text
from .report import EvalReport, write_report

PPL_MAX_CHUNK = 1024  # tokens per perplexity window (the model's context when shorter)
# The quick probe set (EvalConfig.quick): per kind of probe, answer length, general prompts and their KL tokens.
QUICK = {"probes_per_kind": 4, "max_new_tokens": 32, "kl_prompts": 4, "kl_max_new_tokens": 16}


def open_book_probes(run: RunDir, probes: list[Probe], tokenizer: Any, model: Any, gen: GenerationConfig) -> dict:
    """Position -> the knowledge probe asked with the pages in the prompt, for those where a passage fits."""
    from ..models import context_length

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
        with loaded.adapter_disabled():
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
        with loaded.adapter_disabled():
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


def evaluate(
    run_dir: str | Path | RunDir,
    config: EvalConfig | None = None,
    progress: Progress | None = None,
    generation: GenerationConfig | None = None,
) -> EvalReport:
    """Answer the probes with the base and the adapter, measure forgetting, write eval.json/.md/.png.

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
    from ..generate import load_for_run
    from ..models import context_length

    run = RunDir(run_dir).require()
    config = config or EvalConfig()
    asked = gen = generation or GenerationConfig()
    progress = progress or Progress()
    started = time.time()
    probes, source = collect_probes(run, config, progress)
    has_adapter = run.has_adapter()
    forgetting_on = config.forgetting and has_adapter
    prompts = general_prompts() if forgetting_on else []
    quick = is_quick(config)
    kl_tokens = config.kl_max_new_tokens
    if quick:
        n = QUICK["probes_per_kind"]
        probes = [p for kind in KINDS for p in [q for q in probes if q.kind == kind][:n]]
        prompts = prompts[: QUICK["kl_prompts"]]
        gen = replace(gen, max_new_tokens=min(gen.max_new_tokens, QUICK["max_new_tokens"]))
        kl_tokens = min(kl_tokens, QUICK["kl_max_new_tokens"])
    if not probes and not forgetting_on:
        raise EvalError(
            "nothing to evaluate: no probes (give --probes, --auto-probes or keep retention) and no forgetting"
        )
    note = None if has_adapter else "no adapter in this run: the base model was evaluated alone"

    progress.start("load model", total=None)
    loaded = load_for_run(run, with_adapter=has_adapter, progress=progress)
    progress.finish()
    model, tok = loaded.model, loaded.tokenizer
    chat_model = bool(getattr(tok, "chat_template", None))
    timings = {"load_s": time.time() - started}

    t0 = time.time()
    sides = 2 if has_adapter else 1
    open_book = open_book_probes(run, probes, tok, model, gen) if config.open_book else {}
    total = len(probes) * sides + len(open_book) + len(prompts)
    progress.start("evaluate", total=total, unit="answer")
    results = [ProbeResult(p, probe_form(p, chat_model)) for p in probes]
    answered, stopped = 0, False
    try:
        for first in range(0, len(results), config.eval_batch_size):
            answer_group(loaded, results, first, config.eval_batch_size, open_book, gen, progress)
            answered = min(first + config.eval_batch_size, len(results))
    except GroupStopped as exc:
        stopped = True
        answered += exc.answered
        if not answered:
            raise EvalStopped("evaluation stopped before any probe was answered; nothing was written") from None
        results = results[:answered]  # a probe only one side answered would compare unequal sets
    timings["probes_s"] = time.time() - t0
    contamination = None
    if has_adapter and run.has_corpus():
        contamination = measure_contamination(results, corpus_names(list(run.load_corpus()["text"])))

    forgetting = None
    if forgetting_on and not stopped:
        t0 = time.time()
        chunk = min(context_length(model.config) or PPL_MAX_CHUNK, PPL_MAX_CHUNK)
        try:
            forgetting = measure_forgetting(
                loaded, prompts, general_text(), kl_tokens, chunk, progress, config.eval_batch_size
            )
        except EvalStopped:
            stopped = True
        timings["forgetting_s"] = time.time() - t0
    progress.finish()
    timings["total_s"] = time.time() - started
    if stopped and not answered and forgetting is None:
        raise EvalStopped("evaluation stopped before anything was measured; nothing was written")
    if stopped:
        skipped = " and forgetting was not measured" if forgetting_on and forgetting is None else ""
        stop_note = f"stopped after {answered} of {len(probes)} probes: the scores cover those{skipped}"
        note = f"{note}; {stop_note}" if note else stop_note

    meta = run.read_adapter_meta() if has_adapter else {}
    settings = {
        "generation": to_dict(gen),
        "greedy": gen.greedy,
        "probes": source,
        "probe_file": config.probes,
        "auto_probes": config.auto_probes,
        "retention": config.retention,
        "forgetting": config.forgetting,
        "kl_max_new_tokens": kl_tokens,
        "quick": quick,
        "probes_planned": len(probes),
        "chat_template": chat_model,
        "adapter_status": meta.get("status"),
        "adapter_step": meta.get("step"),
        "adapter_kept_step": meta.get("kept_step"),  # the guard's choice: the step whose weights these are
        "guard": {k: (meta.get("guard") or {}).get(k) for k in ("learnt", "reason")} if meta.get("guard") else None,
        "counts": {kind: sum(r.probe.kind == kind for r in results) for kind in KINDS},
    }
    report = EvalReport(
        run_dir=str(run),
        model=loaded.model_name,
        has_adapter=has_adapter,
        base=summarize(results, "base"),
        adapter=summarize(results, "adapter") if has_adapter else None,
        forgetting=forgetting,
        probes=results,
        settings=settings,
        timings={k: round(v, 2) for k, v in timings.items()},
        note=note,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        stopped=stopped,
        contamination=contamination,
        open_book=summarize(results, "open_book") if open_book else None,
    )
    run.update_config(eval=to_dict(config), generation=to_dict(asked))
    write_report(report, run)
    return report
