"""kinject web app: Gradio UI wiring only; every action calls the same kinject verbs as the CLI.

`python app.py [--host H] [--port P]`. Runs live under $KINJECT_RUNS (default ./runs). Bound to a non-loopback
address the app requires $KINJECT_AUTH ("user:password"), or refuses to start unless $KINJECT_ALLOW_NO_AUTH=1.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a self-hosted tool

import gradio as gr  # noqa: E402

from kinject import runs
from kinject.config import (
    DEFAULT_PRESET,
    PRESETS,
    BlocksConfig,
    ConfigError,
    EvalConfig,
    FetchConfig,
    GenerationConfig,
    ModelConfig,
    PrepareConfig,
    TrainConfig,
)
from kinject.jobs import JOBS, JobBusyError
from kinject.progress import Progress

RUNS_ROOT = Path(os.environ.get("KINJECT_RUNS", "runs"))
SOURCE_COLUMNS = ["status", "input", "title", "chars", "tokens", "error"]


class GradioProgress(Progress):
    """Bridges kinject's Progress to a gr.Progress bar inside an event handler."""

    def __init__(self, bar: gr.Progress):
        self.bar, self.phase, self.total, self.done = bar, "", None, 0

    def start(self, phase: str, total: int | None = None, unit: str = "it") -> None:
        self.phase, self.total, self.done = phase, total, 0
        self.bar(0 if total else None, desc=phase)

    def advance(self, n: int = 1, **info: Any) -> None:
        self.done += n
        if self.total:
            self.bar(min(self.done / self.total, 1.0), desc=self.phase)


def list_runs() -> list[str]:
    """Run folders under RUNS_ROOT, newest first."""
    if not RUNS_ROOT.is_dir():
        return []
    found = [p for p in RUNS_ROOT.iterdir() if (p / runs.CONFIG).is_file()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def _run_path(name: str | None) -> Path:
    if not name:
        raise gr.Error("Choose a run first (prepare one in the Prepare tab).")
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise gr.Error(f"Invalid run name {name!r}: use letters, digits, '-', '_' and '.'.")
    return RUNS_ROOT / name


def _runs_update(selected: str | None = None) -> Any:
    names = list_runs()
    return gr.update(choices=names, value=selected if selected in names else (names[0] if names else None))


# --- Prepare -------------------------------------------------------------------------------------------------------
def do_prepare(
    urls_text: str,
    files: list[str] | None,
    name: str,
    model: str,
    block_size: float,
    allow_private: bool,
    force: bool,
    progress: gr.Progress = gr.Progress(),
):
    from kinject.prepare import NoUsableSourceError, prepare

    urls = [u.strip() for u in (urls_text or "").splitlines() if u.strip() and not u.strip().startswith("#")]
    name = (name or "").strip() or time.strftime("run-%Y%m%d-%H%M%S")
    out = _run_path(name)
    try:
        config = PrepareConfig(
            urls=urls,
            files=[str(f) for f in files or []],
            model=ModelConfig(model=model),
            fetch=FetchConfig(allow_private_urls=allow_private),
            blocks=BlocksConfig(block_size=int(block_size)),
        )
        result = prepare(config, out, force=force, progress=GradioProgress(progress))
    except NoUsableSourceError as exc:
        return _rows_table(exc.rows), f"**No usable source; nothing written.**\n\n```\n{exc}\n```", _runs_update()
    except (ConfigError, runs.RunError, RuntimeError) as exc:
        raise gr.Error(str(exc)) from exc
    s = result.stats
    ok = sum(r["status"] == "ok" for r in result.rows)
    summary = (
        f"**{name}**: {ok}/{len(result.rows)} sources used · {s.corpus_tokens:,} tokens · {s.blocks} blocks of "
        f"{s.block_size} · packing efficiency {s.packing_efficiency:.1%}\n\n"
        f"CLI equivalent: `{_prepare_cli(config, out)}`"
    )
    return _rows_table(result.rows), summary, _runs_update(name)


def _rows_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r.get(c, "") for c in SOURCE_COLUMNS] for r in rows]


def _prepare_cli(config: PrepareConfig, out: Path) -> str:
    parts = ["python -m kinject prepare", "--out", str(out), "--model", config.model.model]
    parts += [a for u in config.urls for a in ("--url", u)] + [a for f in config.files for a in ("--file", f)]
    parts += ["--block-size", str(config.blocks.block_size)]
    if config.fetch.allow_private_urls:
        parts.append("--allow-private-urls")
    return " ".join(shlex.quote(p) if " " in p else p for p in parts)


# --- Train ---------------------------------------------------------------------------------------------------------
def _train_config(preset, epochs, lr, rank, alpha, batch, quantization, eval_at_end, text_format=None) -> TrainConfig:
    overrides = {"epochs": epochs, "learning_rate": lr, "lora_r": rank, "lora_alpha": alpha, "batch_size": batch}
    ints = ("lora_r", "lora_alpha", "batch_size")
    values = {k: (int(v) if k in ints else float(v)) for k, v in overrides.items() if v not in (None, "")}
    values = {k: v for k, v in values.items() if v}  # 0 or blank: the preset's value
    return TrainConfig(
        preset=preset, quantization=quantization, eval_at_end=eval_at_end, text_format=text_format or None, **values
    )


def preset_values(preset: str):
    c = TrainConfig(preset=preset)
    return c.epochs, c.learning_rate, c.lora_r, c.lora_alpha, c.batch_size, c.text_format


def _evaluate_after(run_dir: Path, progress: Progress) -> None:
    from kinject.evaluate import evaluate

    evaluate(run_dir, EvalConfig(), progress)


def start_training(run, preset, epochs, lr, rank, alpha, batch, quantization, eval_at_end, fmt=None, resume=False):
    run_dir = _run_path(run)
    try:
        config = _train_config(preset, epochs, lr, rank, alpha, batch, quantization, eval_at_end, fmt)
        JOBS.start(run_dir, None if resume else config, resume=resume, after=_evaluate_after if eval_at_end else None)
    except (JobBusyError, ConfigError, runs.RunError) as exc:
        raise gr.Error(str(exc)) from exc
    cli = f"python -m kinject train {run_dir} --preset {preset} --epochs {config.epochs} --lr {config.learning_rate} "
    cli += f"--rank {config.lora_r} --alpha {config.lora_alpha} --batch-size {config.batch_size}"
    cli += f" --quantization {quantization} --text-format {config.text_format}" + (" --resume" if resume else "")
    return (*job_view(run), gr.Timer(active=True), f"CLI equivalent: `{cli}`")


def resume_training(run, preset, epochs, lr, rank, alpha, batch, quantization, eval_at_end, fmt=None):
    return start_training(run, preset, epochs, lr, rank, alpha, batch, quantization, eval_at_end, fmt, resume=True)


def stop_training(run):
    if not JOBS.stop():
        gr.Info("No training job is running.")
    return job_view(run)


def job_view(run: str | None):
    """Status markdown and the loss curve for ``run`` (the live job when it is the one training)."""
    if not run:
        return "No run selected.", None
    run_dir = _run_path(run)
    state = JOBS.status_of(run_dir)
    if state is None:
        return f"**{run}**: not trained yet.", None
    eta = f" · ETA {state.eta_s:.0f} s" if state.eta_s else ""
    tps = f" · {state.tokens_per_s:.0f} tokens/s" if state.tokens_per_s else ""
    loss = f" · loss {state.loss:.4f}" if state.loss is not None else ""
    mem = f" · peak memory {state.peak_memory_mb:.0f} MB" if state.peak_memory_mb else ""
    text = f"**{run}**: {state.status}" + (f" ({state.phase})" if state.active else "")
    text += f" · step {state.step}/{state.total} · epoch {state.epoch:.2f}{loss}{tps}{eta}{mem}"
    if state.error:
        text += f"\n\n**Error:** {state.error}"
    elif state.message:
        text += f"\n\n{state.message}"
    return text, _loss_frame(run_dir)


def _loss_frame(run_dir: Path):
    import pandas as pd

    path = run_dir / runs.METRICS
    if not path.is_file():
        return None
    rows = [r for r in runs.read_jsonl(path, skip_bad=True) if "loss" in r and "step" in r]
    return pd.DataFrame({"step": [r["step"] for r in rows], "loss": [r["loss"] for r in rows]}) if rows else None


def poll(run):
    active = JOBS.running()  # read first: if the job ends meanwhile, the view below already shows it ended
    text, frame = job_view(run)
    return text, frame, gr.Timer(active=active)


# --- Evaluate and ask ----------------------------------------------------------------------------------------------
def do_evaluate(run, probes_file, auto_probes, max_new_tokens, progress: gr.Progress = gr.Progress()):
    from kinject.evaluate import evaluate

    run_dir = _run_path(run)
    if JOBS.running():
        raise gr.Error("A training job is running; evaluate when it has finished (one model job at a time).")
    try:
        config = EvalConfig(
            probes=str(probes_file) if probes_file else None,
            auto_probes=int(auto_probes),
            generation=GenerationConfig(max_new_tokens=int(max_new_tokens)),
        )
        evaluate(run_dir, config, GradioProgress(progress))
    except (ConfigError, runs.RunError, RuntimeError, ValueError) as exc:
        raise gr.Error(str(exc)) from exc
    return show_eval(run)


def show_eval(run):
    if not run:
        return "No run selected.", None
    run_dir = _run_path(run)
    md, png = run_dir / "eval.md", run_dir / "eval.png"
    text = md.read_text(encoding="utf-8") if md.is_file() else "No evaluation yet for this run."
    return text, str(png) if png.is_file() else None


def do_ask(run, question, max_new_tokens):
    from kinject.generate import answer, load_for_run

    run_dir = _run_path(run)
    if not (question or "").strip():
        raise gr.Error("Type a question.")
    if JOBS.running():
        raise gr.Error("A training job is running; ask when it has finished (one model job at a time).")
    config = GenerationConfig(max_new_tokens=int(max_new_tokens))
    try:
        loaded = load_for_run(run_dir, with_adapter=(run_dir / runs.ADAPTER / "adapter_config.json").is_file())
    except (RuntimeError, runs.RunError) as exc:
        raise gr.Error(str(exc)) from exc
    base = answer(loaded, question, config, base=True)
    adapted = answer(loaded, question, config) if loaded.has_adapter else "(no adapter trained for this run yet)"
    return base, adapted


def runs_table():
    rows = []
    for name in list_runs():
        run_dir = RUNS_ROOT / name
        state = JOBS.status_of(run_dir)
        try:
            stats = runs.read_json(run_dir / runs.BLOCKS_JSON) if (run_dir / runs.BLOCKS_JSON).is_file() else {}
            ev = runs.read_json(run_dir / runs.EVAL_JSON) if (run_dir / runs.EVAL_JSON).is_file() else {}
        except (OSError, ValueError) as exc:  # one damaged run must not hide the others
            rows.append([name, f"unreadable: {exc}", "", "", "", ""])
            continue
        adapter = (ev.get("adapter") or {}).get("knowledge_accuracy")
        rows.append(
            [
                name,
                state.status if state else "prepared",
                stats.get("corpus_tokens", ""),
                stats.get("blocks", ""),
                (ev.get("base") or {}).get("knowledge_accuracy", ""),
                "" if adapter is None else adapter,
            ]
        )
    return rows


# --- Layout --------------------------------------------------------------------------------------------------------
def build_ui() -> gr.Blocks:
    with gr.Blocks(title="kinject") as demo:
        gr.Markdown(
            "# kinject\nTeach a chat model new facts from a few web pages with (Q)LoRA, then check with numbers "
            "that it learnt them and still chats. Prepare → Train → Evaluate → Ask."
        )
        run = gr.Dropdown(label="Run", choices=list_runs(), value=None, allow_custom_value=False, interactive=True)
        with gr.Tab("Prepare"):
            gr.Markdown(
                "Fetch pages (one URL per line) and/or upload files; kinject strips menus, banners and "
                "footers, deduplicates, tokenizes and packs the text into training blocks."
            )
            urls = gr.Textbox(label="URLs", lines=5, placeholder="https://example.com/announcement\n...")
            files = gr.File(label="Files (.html .htm .txt .md .pdf)", file_count="multiple", type="filepath")
            with gr.Row():
                name = gr.Textbox(label="Run name", placeholder="aws-summit (default: run-<date>)")
                model = gr.Textbox(label="Model", value=ModelConfig().model, info="bundled, folder or Hub id")
                block = gr.Number(label="Block size", value=512, precision=0, info="tokens per training block")
            with gr.Row():
                private = gr.Checkbox(label="Allow private/loopback URLs", value=False)
                force = gr.Checkbox(label="Replace an existing run of that name", value=False)
            prepare_btn = gr.Button("Prepare", variant="primary")
            summary = gr.Markdown()
            table = gr.Dataframe(headers=SOURCE_COLUMNS, label="Sources", wrap=True)
        with gr.Tab("Train"):
            defaults = preset_values(DEFAULT_PRESET)
            with gr.Row():
                preset = gr.Dropdown(label="Preset", choices=list(PRESETS), value=DEFAULT_PRESET)
                quant = gr.Dropdown(
                    label="Quantization",
                    choices=["auto", "4bit", "none"],
                    value="auto",
                    info="auto: 4-bit QLoRA on a GPU, plain LoRA on a CPU",
                )
                eval_end = gr.Checkbox(label="Evaluate when done", value=True)
            with gr.Row():
                epochs = gr.Number(label="Epochs", value=defaults[0])
                lr = gr.Number(label="Learning rate", value=defaults[1])
                rank = gr.Number(label="LoRA rank", value=defaults[2], precision=0)
                alpha = gr.Number(label="LoRA alpha", value=defaults[3], precision=0)
                batch = gr.Number(label="Batch size", value=defaults[4], precision=0)
                fmt = gr.Dropdown(
                    label="Text format",
                    choices=["raw", "chat", "both"],
                    value=defaults[5],
                    info="raw text, pages as chat answers, or both",
                )
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary")
                stop_btn = gr.Button("Stop (saves the adapter so far)", variant="stop")
                resume_btn = gr.Button("Resume from checkpoint")
            status = gr.Markdown("No run selected.")
            cli = gr.Markdown()
            loss_plot = gr.LinePlot(x="step", y="loss", label="Training loss")
            timer = gr.Timer(1.0, active=False)
        with gr.Tab("Evaluate"):
            gr.Markdown(
                "Base vs adapter on knowledge probes (yours or generated from the corpus) and on retention "
                "probes; forgetting as KL divergence and perplexity ratio on general data."
            )
            with gr.Row():
                probes = gr.File(label="Probe file (JSONL, optional)", type="filepath")
                auto = gr.Number(label="Automatic probes", value=EvalConfig().auto_probes, precision=0)
                max_new = gr.Number(label="Max new tokens", value=GenerationConfig().max_new_tokens, precision=0)
            eval_btn = gr.Button("Evaluate", variant="primary")
            eval_md = gr.Markdown()
            eval_png = gr.Image(label="Scores", type="filepath")
        with gr.Tab("Ask"):
            question = gr.Textbox(label="Question", value="What GPUs do Amazon EC2 P5 instances have?")
            ask_tokens = gr.Number(label="Max new tokens", value=GenerationConfig().max_new_tokens, precision=0)
            ask_btn = gr.Button("Ask both", variant="primary")
            with gr.Row():
                base_answer = gr.Textbox(label="Base model", lines=8)
                adapter_answer = gr.Textbox(label="With adapter", lines=8)
        with gr.Tab("Runs"):
            refresh = gr.Button("Refresh")
            runs_df = gr.Dataframe(
                headers=["run", "status", "tokens", "blocks", "base knowledge", "adapter knowledge"], label="Runs"
            )

        train_inputs = [run, preset, epochs, lr, rank, alpha, batch, quant, eval_end, fmt]
        prepare_btn.click(
            do_prepare, [urls, files, name, model, block, private, force], [table, summary, run], api_name="prepare"
        )
        preset.change(preset_values, preset, [epochs, lr, rank, alpha, batch, fmt], api_name="preset_values")
        start_btn.click(start_training, train_inputs, [status, loss_plot, timer, cli], api_name="train")
        resume_btn.click(resume_training, train_inputs, [status, loss_plot, timer, cli], api_name="resume")
        stop_btn.click(stop_training, run, [status, loss_plot], api_name="stop")
        timer.tick(poll, run, [status, loss_plot, timer], api_name="poll")
        run.change(poll, run, [status, loss_plot, timer], api_name="select_run").then(
            show_eval, run, [eval_md, eval_png], api_name="show_eval"
        )
        eval_btn.click(do_evaluate, [run, probes, auto, max_new], [eval_md, eval_png], api_name="evaluate")
        ask_btn.click(do_ask, [run, question, ask_tokens], [base_answer, adapter_answer], api_name="ask")
        refresh.click(runs_table, None, runs_df, api_name="runs")
        # A reloaded page re-attaches to the running job: list runs, pick the training one, restart polling.
        demo.load(_on_load, None, [run, status, loss_plot, timer, runs_df], api_name="load")
    return demo


def _on_load():
    state = JOBS.state()
    selected = Path(state.run_dir).name if state.run_dir else None
    text, frame = job_view(selected) if selected else ("No run selected.", None)
    return _runs_update(selected), text, frame, gr.Timer(active=JOBS.running()), runs_table()


def _auth_for(host: str) -> list[tuple[str, str]] | None:
    """Credentials from $KINJECT_AUTH ("user:pass[,user2:pass2]"); required off loopback."""
    raw = os.environ.get("KINJECT_AUTH", "").strip()
    creds = [tuple(p.split(":", 1)) for p in raw.split(",") if ":" in p] if raw else []
    if creds:
        return creds  # type: ignore[return-value]
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        if os.environ.get("KINJECT_ALLOW_NO_AUTH") != "1":
            sys.exit(
                f"error: refusing to serve on {host} without authentication: anyone who reaches it could make this "
                "server fetch URLs and use its GPU. Set KINJECT_AUTH=user:password, or KINJECT_ALLOW_NO_AUTH=1 if a "
                "proxy in front authenticates."
            )
        print(f"WARNING: serving on {host} WITHOUT authentication (KINJECT_ALLOW_NO_AUTH=1)", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="kinject web app")
    parser.add_argument("--host", default=os.environ.get("KINJECT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("KINJECT_PORT", "7860")))
    args = parser.parse_args(argv)
    auth = _auth_for(args.host)
    RUNS_ROOT.mkdir(parents=True, exist_ok=True)
    build_ui().queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, auth=auth, show_error=True
    )


if __name__ == "__main__":
    main()
