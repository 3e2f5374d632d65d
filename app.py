"""kinject web app: Gradio UI wiring only; every action calls the same kinject verbs as the CLI.

`python app.py [--host H] [--port P]`. Runs live under $KINJECT_RUNS (default ./runs). Bound to a non-loopback
address the app requires $KINJECT_AUTH ("user:password"), or refuses to start unless $KINJECT_ALLOW_NO_AUTH=1.

The forms are built from the config dataclasses (``kinject.config.describe_fields``): each field is a control
named after it, and each handler receives the controls' values by field name (gradio's ``inputs_kwargs``) and
builds the same config objects the CLI builds. A field added to a config class appears under "Advanced settings"
without a change here.
"""

from __future__ import annotations

import argparse
import inspect
import ipaddress
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a self-hosted tool

import gradio as gr  # noqa: E402

from kinject.backends import BackendError, choose_backend, stream_chat  # noqa: E402
from kinject.cli import VERB_SECTIONS, prepare_command, train_command  # noqa: E402
from kinject.config import (  # noqa: E402
    DEFAULT_PRESET,
    PRESET_FIELDS,
    AugmentConfig,
    BlocksConfig,
    ConfigError,
    EvalConfig,
    FieldInfo,
    PrepareConfig,
    TrainConfig,
    build,
    describe_fields,
    training_blocks,
)
from kinject.jobs import JOBS, JobBusyError  # noqa: E402
from kinject.progress import Progress  # noqa: E402
from kinject.runs import RunDir, RunError  # noqa: E402

RUNS_ROOT = Path(os.environ.get("KINJECT_RUNS", "runs"))
SOURCE_COLUMNS = ["status", "input", "title", "chars", "tokens", "error"]
_UNSET = object()


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


# --- Forms from the config dataclasses -----------------------------------------------------------------------------
def field_input(info: FieldInfo, value: Any = _UNSET) -> gr.Component:
    """The control for one config field: its help is the control's info text."""
    value = info.default if value is _UNSET else value
    kw: dict[str, Any] = {"label": info.name.replace("_", " ").capitalize(), "info": info.help}
    if info.kind == "bool":
        return gr.Checkbox(value=bool(value), **kw)
    if info.kind == "choice":
        return gr.Dropdown(choices=list(info.choices), value=value, **kw)
    if info.kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if info.kind == "int" else None, **kw)
    if info.kind == "list":
        return gr.Textbox(value="\n".join(value or []), lines=2, placeholder="one per line", **kw)
    return gr.Textbox(value=value if value is not None else "", **kw)


def settings_form(
    sections: dict[str, type],
    rows: list[list[str]],
    values: dict[str, Any] | None = None,
    made: dict[str, Any] | None = None,
    leave_out: tuple[str, ...] = (),
) -> dict[str, gr.Component]:
    """Controls for every field of ``sections``: the ``rows`` named first, the rest in "Advanced settings".

    ``values`` override defaults; ``made`` builds a custom control for a field (an upload box, say).
    """
    infos = {i.name: i for cls in sections.values() for i in describe_fields(cls)}
    values, made = values or {}, made or {}
    form: dict[str, gr.Component] = {}

    def add(name: str) -> None:
        form[name] = made[name]() if name in made else field_input(infos[name], values.get(name, _UNSET))

    for row in rows:
        with gr.Row():
            for name in row:
                add(name)
    rest = [name for name in infos if name not in form and name not in leave_out]
    if rest:
        with gr.Accordion("Advanced settings", open=False):
            for start in range(0, len(rest), 3):
                with gr.Row():
                    for name in rest[start : start + 3]:
                        add(name)
    return form


def takes_fields(verb: str):
    """Declare that a handler takes ``verb``'s config fields as keyword arguments (its ``**settings``).

    Gradio reads a handler's signature to name its API parameters: declared with a default, a field the client
    leaves out is sent as the control's value (or None, which means the field's default), not refused.
    """

    def declare(fn):
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [
            inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=None)
            for cls in VERB_SECTIONS[verb].values()
            for info in describe_fields(cls)
        ]
        fn.__signature__ = signature.replace(parameters=params)
        return fn

    return declare


def section_configs(verb: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Each config section of ``verb`` built from form values keyed by field name."""
    configs = {}
    for section, cls in VERB_SECTIONS[verb].items():
        names = {i.name for i in describe_fields(cls)}
        configs[section] = build(cls, {k: v for k, v in settings.items() if k in names}, section)
    return configs


def list_runs() -> list[str]:
    """Run folders under RUNS_ROOT, newest first."""
    if not RUNS_ROOT.is_dir():
        return []
    found = [p for p in RUNS_ROOT.iterdir() if RunDir(p).is_run()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def _run(name: str | None) -> RunDir:
    if not name:
        raise gr.Error("Choose a run first (prepare one in the Prepare tab).")
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise gr.Error(f"Invalid run name {name!r}: use letters, digits, '-', '_' and '.'.")
    return RunDir(RUNS_ROOT / name)


def _runs_update(selected: str | None = None) -> Any:
    names = list_runs()
    return gr.update(choices=names, value=selected if selected in names else (names[0] if names else None))


# --- Prepare -------------------------------------------------------------------------------------------------------
@takes_fields("prepare")
def do_prepare(run_name: str = "", force: bool = False, progress: gr.Progress = gr.Progress(), **settings: Any):
    from kinject.prepare import NoUsableSourceError, prepare

    name = (run_name or "").strip() or time.strftime("run-%Y%m%d-%H%M%S")
    run = _run(name)
    try:
        config = PrepareConfig(**section_configs("prepare", settings))
        result = prepare(config, run.path, force=force, progress=GradioProgress(progress))
    except NoUsableSourceError as exc:
        return _rows_table(exc.rows), f"**No usable source; nothing written.**\n\n```\n{exc}\n```", _runs_update()
    except (ConfigError, RunError, RuntimeError) as exc:
        raise gr.Error(str(exc)) from exc
    s = result.stats
    ok = sum(r["status"] == "ok" for r in result.rows)
    summary = (
        f"**{name}**: {ok}/{len(result.rows)} sources used · {s.corpus_tokens:,} tokens · {s.blocks} blocks of "
        f"{s.block_size} · packing efficiency {s.packing_efficiency:.1%}\n\n"
        f"CLI equivalent: `{prepare_command(config, run.path, force)}`"
    )
    return _rows_table(result.rows), summary, _runs_update(name)


def _rows_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r.get(c, "") for c in SOURCE_COLUMNS] for r in rows]


# --- Train ---------------------------------------------------------------------------------------------------------
def preset_values(preset: str) -> list[Any]:
    """The values a preset gives its fields, in the order of ``PRESET_FIELDS`` (train, then blocks)."""
    train, blocks = TrainConfig(preset=preset), training_blocks(None, preset)
    return [getattr(train, k) for k in PRESET_FIELDS["train"]] + [getattr(blocks, k) for k in PRESET_FIELDS["blocks"]]


def apply_preset(preset: str) -> list[Any]:
    """The preset's values for the form's fields, and the preset they now show (the form's ``shown_preset``)."""
    return [*preset_values(preset), preset]


@takes_fields("train")
def start_training(run: str | None = None, shown_preset: str | None = None, **settings: Any):
    return _start(run, _preset_settings(settings, shown_preset), resume=False)


@takes_fields("train")
def resume_training(run: str | None = None, shown_preset: str | None = None, **settings: Any):
    return _start(run, _preset_settings(settings, shown_preset), resume=True)


def _preset_settings(settings: dict[str, Any], shown: str | None) -> dict[str, Any]:
    """Settings with the chosen preset's values where a field still shows another preset's value.

    In the browser, choosing a preset fills the form with its values (``shown`` follows it), so nothing changes
    here. An API call that names a preset sends the fields it leaves out with the values the form shows, those of
    ``shown``: they mean "not set", and the chosen preset fills them."""
    preset, shown = settings.get("preset") or DEFAULT_PRESET, shown or DEFAULT_PRESET
    if preset == shown:
        return settings
    names = PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"]
    showing = dict(zip(names, preset_values(shown), strict=True))
    chosen = dict(zip(names, preset_values(preset), strict=True))
    return {k: chosen[k] if k in showing and v == showing[k] else v for k, v in settings.items()}


def _start(name: str | None, settings: dict[str, Any], resume: bool):
    run = _run(name)
    try:
        configs = section_configs("train", settings)
        config, blocks = configs["train"], configs["blocks"]
        JOBS.start(
            run,
            config,
            resume=resume,
            blocks=None if resume else blocks,
            augment=configs["augment"],
            evaluation=EvalConfig(),
        )
        command = train_command(run.path, config, blocks, resume, augment=configs["augment"])
    except (JobBusyError, ConfigError, RunError) as exc:
        raise gr.Error(str(exc)) from exc
    return (*job_view(name), gr.Timer(active=True), f"CLI equivalent: `{command}`")


def stop_training(run: str | None = None):
    if not JOBS.stop():
        gr.Info("No training job is running.")
    return job_view(run)


def job_view(name: str | None):
    """Status markdown and the loss curve for run ``name`` (the live job when it is the one training)."""
    if not name:
        return "No run selected.", None
    run = _run(name)
    state = JOBS.status_of(run)
    if state is None:
        return f"**{name}**: not trained yet.", None
    eta = f" · ETA {state.eta_s:.0f} s" if state.eta_s else ""
    tps = f" · {state.tokens_per_s:.0f} tokens/s" if state.tokens_per_s else ""
    loss = f" · loss {state.loss:.4f}" if state.loss is not None else ""
    mem = f" · peak memory {state.peak_memory_mb:.0f} MB" if state.peak_memory_mb else ""
    text = f"**{name}**: {state.status}" + (f" ({state.phase})" if state.active else "")
    text += f" · step {state.step}/{state.total} · epoch {state.epoch:.2f}{loss}{tps}{eta}{mem}"
    if state.error:
        text += f"\n\n**Error:** {state.error}"
    elif state.message:
        text += f"\n\n{state.message}"
    return text, _loss_frame(run)


def _loss_frame(run: RunDir):
    import pandas as pd

    rows = [r for r in run.read_metrics() if "loss" in r and "step" in r]
    return pd.DataFrame({"step": [r["step"] for r in rows], "loss": [r["loss"] for r in rows]}) if rows else None


def poll(run: str | None = None):
    active = JOBS.running()  # read first: if the job ends meanwhile, the view below already shows it ended
    text, frame = job_view(run)
    return text, frame, gr.Timer(active=active)


# --- Evaluate and ask ----------------------------------------------------------------------------------------------
@takes_fields("eval")
def do_evaluate(run: str | None = None, progress: gr.Progress = gr.Progress(), **settings: Any):
    from kinject.eval import evaluate

    run_dir = _run(run)
    if JOBS.running():
        raise gr.Error("A training job is running; evaluate when it has finished (one model job at a time).")
    try:
        configs = section_configs("eval", settings)
        evaluate(run_dir, configs["eval"], GradioProgress(progress), configs["generation"])
    except (ConfigError, RunError, RuntimeError, ValueError) as exc:
        raise gr.Error(str(exc)) from exc
    return show_eval(run)


def show_eval(run: str | None = None):
    if not run:
        return "No run selected.", None
    run_dir = _run(run)
    plot = run_dir.eval_plot()
    return run_dir.eval_markdown() or "No evaluation yet for this run.", str(plot) if plot else None


@takes_fields("ask")
def do_ask(run: str | None = None, question: str = "", **settings: Any):
    from kinject.generate import answer, load_for_run

    run_dir = _run(run)
    if not (question or "").strip():
        raise gr.Error("Type a question.")
    if JOBS.running():
        raise gr.Error("A training job is running; ask when it has finished (one model job at a time).")
    try:
        config = section_configs("ask", settings)["generation"]
        loaded = load_for_run(run_dir, with_adapter=run_dir.has_adapter())
    except (ConfigError, RuntimeError, RunError) as exc:
        raise gr.Error(str(exc)) from exc
    base = answer(loaded, question, config, base=True)
    adapted = answer(loaded, question, config) if loaded.has_adapter else "(no adapter trained for this run yet)"
    return base, adapted


# --- Chat ----------------------------------------------------------------------------------------------------------
CHAT = choose_backend()
TALK_TO = ["adapter", "base", "merged"]


def _text(content: Any) -> str:
    """A chatbot message's text (gradio may hand back content as parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, list):
        return "".join(_text(c) for c in content)
    return "" if content is None else str(content)


def _conversation(history: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": _text(m.get("content"))} for m in history or []]


@takes_fields("ask")
def send_chat(
    run: str | None = None,
    message: str = "",
    talk_to: str = "adapter",
    compare: bool = False,
    left: list[dict[str, Any]] | None = None,
    right: list[dict[str, Any]] | None = None,
    **settings: Any,
):
    """Stream the answer of the chosen model (and, with ``compare``, of the base beside it) through TGI's protocol:
    kinject's embedded server by default, the KINJECT_ENDPOINT server when set. Yields (left, right, cleared box)."""
    run_dir = _run(run)
    if not (message or "").strip():
        raise gr.Error("Type a message.")
    try:
        generation = section_configs("ask", settings)["generation"]
        target = CHAT.target(run_dir, merged=talk_to == "merged")
    except (ConfigError, RunError, BackendError, RuntimeError) as exc:
        raise gr.Error(f"Chat is not available: {exc}") from exc
    names = {"base": None, "adapter": target.adapter, "merged": target.merged}
    if talk_to not in names:
        raise gr.Error(f"Talk to one of {', '.join(TALK_TO)}.")
    if talk_to != "base" and names[talk_to] is None:
        why = "train one first (Train tab)" if talk_to == "adapter" else "merge the adapter first (`kinject merge`)"
        raise gr.Error(f"Run {run_dir.name} has no {talk_to} model: {why}, or talk to the base.")
    sides = [(left, names[talk_to])] + ([(right, None)] if compare else [])
    histories = [_conversation(h) + [{"role": "user", "content": message}] for h, _ in sides]
    for i, (_, model) in enumerate(sides):
        asked = list(histories[i])
        histories[i].append({"role": "assistant", "content": ""})
        try:
            for piece in stream_chat(target.endpoint_of(model), model, asked, generation):
                histories[i][-1]["content"] += piece
                yield histories[0], histories[1] if compare else right or [], ""
        except BackendError as exc:
            raise gr.Error(str(exc)) from exc
    yield histories[0], histories[1] if compare else right or [], ""


def chat_sides(compare: bool):
    """The right-hand chatbot shows only when comparing."""
    return gr.update(visible=bool(compare), label="Base model")


AUGMENT_COLUMNS = ["kind", "passage", "asked or instruction", "generated", "kept", "why not"]


def augmentation_table(run: str | None = None) -> list[list[Any]]:
    """Every generated row of the run's augmentation (newest set of each kind), kept or not, and why."""
    if not run:
        return []
    run_dir = _run(run)
    rows, seen = [], set()
    for info in run_dir.augmentation_infos():
        if info.get("kind") in seen:
            continue
        seen.add(info.get("kind"))
        loaded = run_dir.load_augmentation(info["key"])
        for r in loaded[0] if loaded else []:
            asked = r.get("question") or r.get("instruction", "")
            made = r.get("text") or r.get("answer", "")
            rows.append(
                [r["kind"], r.get("passage", ""), asked, made, "yes" if r.get("kept") else "no", r.get("reason") or ""]
            )
    return rows


RUNS_COLUMNS = ["run", "status", "tokens", "blocks", "base knowledge", "adapter knowledge"]


def runs_table():
    rows = []
    for name in list_runs():
        run = RunDir(RUNS_ROOT / name)
        state = JOBS.status_of(run)
        try:
            packings = run.blocks_infos()
            stats = packings[0]["stats"] if packings else {}
            ev = run.read_eval() or {}
        except (OSError, ValueError, KeyError) as exc:  # one damaged run must not hide the others
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
PREPARE_ROWS = [["model", "block_size", "allow_private_urls"]]
TRAIN_ROWS = [
    ["preset", "quantization", "eval_at_end"],
    ["epochs", "learning_rate", "lora_r", "lora_alpha", "batch_size", "text_format"],
]
EVAL_ROWS = [["probes", "auto_probes", "max_new_tokens"]]
ASK_ROWS = [["max_new_tokens"]]


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
            prepare_form = settings_form(
                VERB_SECTIONS["prepare"],
                [["urls"], ["files"], *PREPARE_ROWS],
                made={
                    "urls": lambda: gr.Textbox(
                        label="URLs", lines=5, placeholder="https://example.com/announcement\n..."
                    ),
                    "files": lambda: gr.File(
                        label="Files (.html .htm .txt .md .pdf)", file_count="multiple", type="filepath"
                    ),
                },
            )
            with gr.Row():
                run_name = gr.Textbox(label="Run name", placeholder="aws-summit (default: run-<date>)")
                force = gr.Checkbox(label="Replace an existing run of that name", value=False)
            prepare_btn = gr.Button("Prepare", variant="primary")
            summary = gr.Markdown()
            table = gr.Dataframe(headers=SOURCE_COLUMNS, label="Sources", wrap=True)
        with gr.Tab("Train"):
            preset_defaults = dict(
                zip(PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"], preset_values(DEFAULT_PRESET), strict=True)
            )
            train_form = settings_form(
                {"train": TrainConfig, "blocks": BlocksConfig, "augment": AugmentConfig},
                TRAIN_ROWS,
                values={**preset_defaults, "eval_at_end": True},
            )
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary")
                stop_btn = gr.Button("Stop (saves the adapter so far)", variant="stop")
                resume_btn = gr.Button("Resume from checkpoint")
            status = gr.Markdown("No run selected.")
            cli = gr.Markdown()
            loss_plot = gr.LinePlot(x="step", y="loss", label="Training loss")
            timer = gr.Timer(1.0, active=False)
            with gr.Accordion("Generated training data (augmentation)", open=False):
                show_data = gr.Button("Show")
                data_df = gr.Dataframe(headers=AUGMENT_COLUMNS, wrap=True, label="Paraphrases, questions, replay")
        with gr.Tab("Evaluate"):
            gr.Markdown(
                "Base vs adapter on knowledge probes (yours or generated from the corpus) and on retention "
                "probes; forgetting as KL divergence and perplexity ratio on general data."
            )
            eval_form = settings_form(
                VERB_SECTIONS["eval"],
                EVAL_ROWS,
                made={"probes": lambda: gr.File(label="Probe file (JSONL, optional)", type="filepath")},
            )
            eval_btn = gr.Button("Evaluate", variant="primary")
            eval_md = gr.Markdown()
            eval_png = gr.Image(label="Scores", type="filepath")
        with gr.Tab("Ask"):
            question = gr.Textbox(label="Question", value="What GPUs do Amazon EC2 P5 instances have?")
            ask_form = settings_form(VERB_SECTIONS["ask"], ASK_ROWS)
            ask_btn = gr.Button("Ask both", variant="primary")
            with gr.Row():
                base_answer = gr.Textbox(label="Base model", lines=8)
                adapter_answer = gr.Textbox(label="With adapter", lines=8)
        with gr.Tab("Chat"):
            gr.Markdown(
                "Chat with the run's adapter, its base model or its merged model through TGI's protocol "
                "(kinject's embedded server, started on the first message; or your own TGI, vLLM or SGLang "
                "server when `KINJECT_ENDPOINT` is set). Compare mode sends the same conversation to the base "
                "too and shows both answers side by side."
            )
            with gr.Row():
                talk_to = gr.Radio(TALK_TO, value="adapter", label="Talk to")
                compare = gr.Checkbox(value=False, label="Compare with the base model")
            chat_form = settings_form(VERB_SECTIONS["ask"], [["max_new_tokens", "temperature", "top_p"]])
            with gr.Row():
                chat_left = gr.Chatbot(label="Chat", height=380)
                chat_right = gr.Chatbot(label="Base model", height=380, visible=False)
            with gr.Row():
                chat_box = gr.Textbox(label="Message", placeholder="Ask about your pages...", scale=4)
                chat_btn = gr.Button("Send", variant="primary", scale=1)
                clear_btn = gr.Button("Clear", scale=1)
        with gr.Tab("Runs"):
            refresh = gr.Button("Refresh")
            runs_df = gr.Dataframe(headers=RUNS_COLUMNS, label="Runs")

        prepare_btn.click(
            do_prepare,
            [run_name, force],
            [table, summary, run],
            inputs_kwargs=prepare_form,
            api_name="prepare",
        )
        shown_preset = gr.State(DEFAULT_PRESET)  # the preset whose values the form shows (see _preset_settings)
        preset_outputs = [train_form[k] for k in PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"]]
        train_form["preset"].change(
            apply_preset, train_form["preset"], [*preset_outputs, shown_preset], api_name="preset_values"
        )
        train_outputs = [status, loss_plot, timer, cli]
        train_inputs = {**train_form, "shown_preset": shown_preset}
        start_btn.click(start_training, [run], train_outputs, inputs_kwargs=train_inputs, api_name="train")
        resume_btn.click(resume_training, [run], train_outputs, inputs_kwargs=train_inputs, api_name="resume")
        stop_btn.click(stop_training, run, [status, loss_plot], api_name="stop")
        timer.tick(poll, run, [status, loss_plot, timer], api_name="poll")
        run.change(poll, run, [status, loss_plot, timer], api_name="select_run").then(
            show_eval, run, [eval_md, eval_png], api_name="show_eval"
        )
        eval_btn.click(do_evaluate, [run], [eval_md, eval_png], inputs_kwargs=eval_form, api_name="evaluate")
        ask_btn.click(do_ask, [run, question], [base_answer, adapter_answer], inputs_kwargs=ask_form, api_name="ask")
        refresh.click(runs_table, None, runs_df, api_name="runs")
        chat_inputs = [run, chat_box, talk_to, compare, chat_left, chat_right]
        chat_outputs = [chat_left, chat_right, chat_box]
        chat_btn.click(send_chat, chat_inputs, chat_outputs, inputs_kwargs=chat_form, api_name="chat")
        chat_box.submit(send_chat, chat_inputs, chat_outputs, inputs_kwargs=chat_form, api_name=False)
        compare.change(chat_sides, compare, chat_right, api_name=False)
        clear_btn.click(lambda: ([], []), None, [chat_left, chat_right], api_name=False)
        show_data.click(augmentation_table, run, data_df, api_name="augmentation")
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
