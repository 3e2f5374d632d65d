"""The `evaluate` verb: base vs adapter on the run's probes, forgetting on shipped general data, the report."""

from __future__ import annotations

import time
from pathlib import Path

from ..config import EvalConfig, GenerationConfig, to_dict
from ..progress import Progress
from ..runs import RunDir
from .metrics import ProbeResult, measure_forgetting, probe_form, score_probes, summarize
from .probes import KINDS, EvalError, collect_probes, general_prompts, general_text
from .report import EvalReport, write_report

PPL_MAX_CHUNK = 1024  # tokens per perplexity window (the model's context when shorter)


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
    so). ``progress.should_stop()`` is checked between answers; a stop raises ``EvalStopped`` and writes nothing.
    """
    from ..generate import load_for_run
    from ..models import context_length

    run = RunDir(run_dir).require()
    config = config or EvalConfig()
    gen = generation or GenerationConfig()
    progress = progress or Progress()
    started = time.time()
    probes, source = collect_probes(run, config, progress)
    has_adapter = run.has_adapter()
    forgetting_on = config.forgetting and has_adapter
    prompts = general_prompts() if forgetting_on else []
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
    progress.start("evaluate", total=len(probes) * sides + len(prompts), unit="answer")
    results = [ProbeResult(p, probe_form(p, chat_model)) for p in probes]
    with loaded.adapter_disabled():
        for result, answer in zip(results, score_probes(model, tok, probes, gen, progress, side="base"), strict=True):
            result.base = answer
    if has_adapter:
        for result, answer in zip(
            results, score_probes(model, tok, probes, gen, progress, side="adapter"), strict=True
        ):
            result.adapter = answer
    timings["probes_s"] = time.time() - t0

    forgetting = None
    if forgetting_on:
        t0 = time.time()
        chunk = min(context_length(model.config) or PPL_MAX_CHUNK, PPL_MAX_CHUNK)
        forgetting = measure_forgetting(loaded, prompts, general_text(), config.kl_max_new_tokens, chunk, progress)
        timings["forgetting_s"] = time.time() - t0
    progress.finish()
    timings["total_s"] = time.time() - started

    meta = run.read_adapter_meta() if has_adapter else {}
    settings = {
        "generation": to_dict(gen),
        "greedy": gen.greedy,
        "probes": source,
        "probe_file": config.probes,
        "auto_probes": config.auto_probes,
        "retention": config.retention,
        "forgetting": config.forgetting,
        "kl_max_new_tokens": config.kl_max_new_tokens,
        "chat_template": chat_model,
        "adapter_status": meta.get("status"),
        "adapter_step": meta.get("step"),
        "counts": {kind: sum(p.kind == kind for p in probes) for kind in KINDS},
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
    )
    run.update_config(eval=to_dict(config), generation=to_dict(gen))
    write_report(report, run)
    return report
