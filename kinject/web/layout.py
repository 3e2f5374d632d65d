"""The app's layout: one function per tab, each returning its components by name, then the events that join them.

Every event has an explicit ``api_name`` (``gradio_client`` drives the app by them) and its parameters are the
config field names (``forms.takes_fields``).
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from kinject.settings.presets import DEFAULT_PRESET, PRESET_FIELDS
from kinject.settings.resolve import VERB_SECTIONS
from kinject.settings.services import OPERATOR_FETCH_FIELDS, AppConfig, ExportConfig, PublishConfig

from . import state
from .chat import TALK_TO, chat_sides, do_ask, left_label, send_chat
from .eval_view import ANSWER_COLUMNS, ANSWER_WIDTHS, show_eval
from .forms import (
    ASK_ROWS,
    CHAT_ROWS,
    EVAL_ROWS,
    EXPORT_ROWS,
    PREPARE_LEAVE_OUT,
    PREPARE_ROWS,
    PUBLISH_ROWS,
    TRAIN_FIELDS,
    TRAIN_ROWS,
    TRAIN_SECTIONS,
    apply_preset,
    form_defaults,
    settings_form,
)
from .handlers import (
    cli_of,
    delete_run,
    eval_plan,
    follow_job,
    on_load,
    poll,
    remember_cli,
    run_settings,
    runs_update,
    source_choices,
    stop_job,
    view_handler,
)
from .job_handlers import do_evaluate, do_export, do_merge, do_prepare, do_push, resume_training, start_training
from .tracking_view import curves_figure, dashboard_text
from .views import (
    AUGMENT_COLUMNS,
    RUNS_COLUMNS,
    RUNS_WIDTHS,
    SOURCE_AUGMENT_COLUMNS,
    SOURCE_COLUMNS,
    augmentation_table,
    card_preview,
    compare_runs,
    data_report_text,
    fetch_policy_text,
    runs_table,
    source_view,
)

UI = dict[str, Any]  # components by name


def header() -> UI:
    """The title, the run picker every tab works on, the job's status area and its Stop button, the poll timer."""
    gr.Markdown(
        "# kinject\nTeach a chat model new facts from a few web pages with (Q)LoRA, then check with numbers "
        "that it learnt them and still chats. **Prepare** the pages → **Train** an adapter → **Evaluate** it "
        "against the base → **Ask** or **Chat** with both → **Runs** to compare, merge or delete → **Publish** to "
        "the Hub."
    )
    run = gr.Dropdown(label="Run", choices=state.list_runs(), value=None, allow_custom_value=False, interactive=True)
    with gr.Row():
        # Stop on the left: gradio's toasts stack at the top right, where they would cover it.
        stop_btn = gr.Button("Stop", variant="stop", scale=0, min_width=120, interactive=False)
        status = gr.Markdown("No run selected.", elem_id="job-status")
    return {"run": run, "status": status, "stop_btn": stop_btn, "timer": gr.Timer(1.0, active=False)}


def prepare_tab() -> UI:
    """URLs and files in, the operator's fetch policy shown, sources out."""
    gr.Markdown(
        "Fetch pages (one URL per line) and/or upload files; kinject strips menus, banners and "
        "footers, deduplicates, tokenizes and packs the text into training blocks."
    )
    gr.Markdown(fetch_policy_text(state.OPERATOR), elem_id="fetch-policy")
    form = settings_form(
        VERB_SECTIONS["prepare"],
        [["urls"], ["files", "questions"], *PREPARE_ROWS],
        leave_out=OPERATOR_FETCH_FIELDS + PREPARE_LEAVE_OUT,
        made={
            "urls": lambda: gr.Textbox(label="URLs", lines=5, placeholder="https://example.com/announcement\n..."),
            "files": lambda: gr.File(
                label="Files (.html .htm .txt .md .pdf)", file_count="multiple", type="filepath", height=140
            ),
            "questions": lambda: gr.File(
                label="Your own questions (optional: .jsonl or .csv with question, answer, source)",
                file_count="multiple",
                file_types=[".jsonl", ".csv", ".json"],
                type="filepath",
                height=140,
            ),
        },
    )
    with gr.Row():
        run_name = gr.Textbox(label="Run name", placeholder="aws-summit (default: run-<date>)")
        force = gr.Checkbox(label="Replace an existing run of that name", value=False)
    return {
        "prepare_form": form,
        "run_name": run_name,
        "force": force,
        "prepare_btn": gr.Button("Prepare", variant="primary"),
        "summary": gr.Markdown(),
        "table": gr.Dataframe(headers=SOURCE_COLUMNS, label="Sources", wrap=True),
    }


def train_tab() -> UI:
    """The training form (preset first), Start and Resume, the equivalent command, the loss plot, the data."""
    ui: UI = {}
    # The form on the left, the loss beside it: with "Advanced settings" open the plot stays in view.
    with gr.Row():
        with gr.Column(scale=3):
            ui["train_form"] = settings_form(TRAIN_SECTIONS, TRAIN_ROWS, values=form_defaults())
        with gr.Column(scale=2):
            with gr.Row():
                ui["start_btn"] = gr.Button("Start", variant="primary")
                ui["resume_btn"] = gr.Button("Resume from checkpoint", interactive=False)
            gr.Markdown(
                "Stop (top) saves the adapter trained so far; Resume continues the run's saved settings. The form "
                "is locked while a job runs."
            )
            ui["cli"] = gr.Markdown(elem_id="train-cli")
            ui["loss_plot"] = gr.Plot(label="Training loss")
    ui["plot_key"] = gr.State("")  # what the plot shows, so a poll redraws it only when a step was logged
    ui["cli_lines"] = gr.BrowserState({}, storage_key="kinject-cli-lines")  # run -> its CLI line, across reloads
    with gr.Accordion("Generated training data (augmentation)", open=False):
        ui["show_data"] = gr.Button("Show")
        ui["data_report"] = gr.Markdown(elem_id="data-report")
        ui["data_df"] = gr.Dataframe(
            headers=AUGMENT_COLUMNS,
            wrap=True,
            label="Paraphrases, questions, replay",
            column_widths=["8%", "10%", "30%", "32%", "6%", "14%"],
        )
    return ui


def evaluate_tab() -> UI:
    """The evaluation form, the scores, their chart and every probe's answers."""
    gr.Markdown(
        "Base vs adapter on knowledge probes (yours or generated from the corpus) and on retention "
        "probes; forgetting as KL divergence and perplexity ratio on general data."
    )
    ui: UI = {
        "eval_form": settings_form(
            VERB_SECTIONS["eval"],
            EVAL_ROWS,
            values={"quick": "auto"},  # the quick set on a CPU; the line below says what the full set takes
            made={"probes": lambda: gr.File(label="Probe file (JSONL, optional)", type="filepath", height=120)},
        ),
        "eval_plan": gr.Markdown(elem_id="eval-plan"),
        "eval_btn": gr.Button("Evaluate", variant="primary"),
        "eval_md": gr.Markdown(elem_id="eval-scores"),
        "eval_png": gr.Image(label="Scores", type="filepath", height=360),
    }
    with gr.Accordion("Answers, probe by probe", open=False, elem_id="eval-answers"):
        ui["eval_answers"] = gr.Dataframe(
            headers=ANSWER_COLUMNS,
            column_widths=ANSWER_WIDTHS,
            datatype="str",
            wrap=True,
            max_height=700,
            interactive=False,
            label="Answers",
        )
    return ui


def ask_tab() -> UI:
    """One question, answered by the base model and by the adapter side by side."""
    ui: UI = {
        "question": gr.Textbox(
            label="Question",
            placeholder="A question about your pages, phrased as a user would ask it",
            info="Answered by the run's base model and by its adapter, side by side.",
        )
    }
    ui["ask_form"] = settings_form(VERB_SECTIONS["ask"], ASK_ROWS)
    ui["ask_btn"] = gr.Button("Ask both", variant="primary")
    with gr.Row():
        ui["base_answer"] = gr.Textbox(label="Base model", lines=8)
        ui["adapter_answer"] = gr.Textbox(label="With adapter", lines=8)
    return ui


def chat_tab() -> UI:
    """A chat with the adapter, the base or the merged model, with the base beside it in compare mode."""
    gr.Markdown(
        "Chat with the run's adapter, its base model or its merged model through TGI's protocol "
        "(kinject's embedded server, started on the first message; or your own TGI, vLLM or SGLang "
        "server when `KINJECT_ENDPOINT` is set). Compare mode sends the same conversation to the base "
        "too and shows both answers side by side."
    )
    ui: UI = {}
    with gr.Row():
        ui["talk_to"] = gr.Radio(TALK_TO, value="adapter", label="Talk to")
        ui["compare"] = gr.Checkbox(value=False, label="Compare with the base model")
    ui["chat_form"] = settings_form(VERB_SECTIONS["ask"], CHAT_ROWS)
    with gr.Row():
        ui["chat_left"] = gr.Chatbot(label="Adapter", height=380, elem_id="chat-left")
        ui["chat_right"] = gr.Chatbot(label="Base model", height=380, visible=False)
    with gr.Row():
        ui["chat_box"] = gr.Textbox(label="Message", placeholder="Ask about your pages...", scale=4)
        ui["chat_btn"] = gr.Button("Send", variant="primary", scale=1)
        ui["chat_stop"] = gr.Button("Stop answering", variant="stop", scale=1, interactive=False)
        ui["clear_btn"] = gr.Button("Clear", scale=1)
    return ui


def runs_tab() -> UI:
    """Every run with its scores, merge, export and delete, how to open its tracked curves, two runs compared (with
    their loss curves), the text training sees per source."""
    ui: UI = {"refresh": gr.Button("Refresh")}
    ui["runs_df"] = gr.Dataframe(
        headers=RUNS_COLUMNS,
        label="Runs",
        wrap=True,
        interactive=False,
        column_widths=RUNS_WIDTHS,
        elem_id="runs-table",
    )
    with gr.Row():
        ui["merge_btn"] = gr.Button("Merge the selected run's adapter into its base", interactive=False)
        ui["export_btn"] = gr.Button("Export it as GGUF for llama.cpp and Ollama", interactive=False)
        ui["confirm_box"] = gr.Textbox(label="Type the run's name to confirm", scale=2)
        ui["delete_btn"] = gr.Button("Delete the selected run", variant="stop", interactive=False)
    ui["tracking_md"] = gr.Markdown(elem_id="tracking")
    with gr.Accordion("Export settings: the merged model, the LoRA adapter over its base, or both", open=False):
        ui["export_form"] = settings_form({"export": ExportConfig}, EXPORT_ROWS, leave_out=("format",))
    with gr.Accordion("Compare two runs", open=False):
        with gr.Row():
            # Custom values allowed: runs made after the page loaded are valid (checked when compared).
            ui["first"] = gr.Dropdown(label="First run", choices=state.list_runs(), allow_custom_value=True)
            ui["second"] = gr.Dropdown(label="Second run", choices=state.list_runs(), allow_custom_value=True)
        ui["compare_btn"] = gr.Button("Compare")
        ui["compare_md"] = gr.Markdown()
        ui["compare_plot"] = gr.Plot(label="Training loss by step, both runs")
    with gr.Accordion("Sources: the text training sees", open=False):
        ui["source_pick"] = gr.Dropdown(label="Source", choices=[], allow_custom_value=True)
        ui["source_text"] = gr.Textbox(label="Extracted text", lines=14, max_lines=30, interactive=False)
        ui["source_df"] = gr.Dataframe(
            headers=SOURCE_AUGMENT_COLUMNS,
            wrap=True,
            label="Generated from it (augmentation)",
            column_widths=["10%", "8%", "30%", "32%", "6%", "14%"],
        )
    return ui


def publish_tab() -> UI:
    """Repository, Private, the token (a password field, used once), Push, the link, and the card's preview."""
    gr.Markdown(
        "Push the selected run's adapter to the Hugging Face Hub with a model card that records its sources "
        "(with their sha256), the training configuration and the base-vs-adapter scores. Pushing again to "
        "the same repository commits what changed."
    )
    ui: UI = {"publish_form": settings_form({"publish": PublishConfig}, PUBLISH_ROWS, leave_out=("public",))}
    with gr.Row():
        ui["private"] = gr.Checkbox(
            value=True, label="Private", info="Create the repository private (an existing one keeps its own)."
        )
        ui["token"] = gr.Textbox(
            label="Hugging Face token",
            type="password",
            placeholder="hf_..."
            + (" (empty: the server's HF_TOKEN)" if state.OPERATOR.push_with_server_token else ""),
            info="A write token from huggingface.co/settings/tokens; used for this push only, never stored.",
            scale=2,
        )
    with gr.Row():
        ui["push_btn"] = gr.Button("Push", variant="primary", interactive=False)
        ui["preview_btn"] = gr.Button("Preview the model card")
    ui["push_link"] = gr.Markdown()
    with gr.Accordion("Model card", open=False):
        ui["card_md"] = gr.Markdown()
    return ui


TABS = [
    ("Prepare", prepare_tab),
    ("Train", train_tab),
    ("Evaluate", evaluate_tab),
    ("Ask", ask_tab),
    ("Chat", chat_tab),
    ("Runs", runs_tab),
    ("Publish", publish_tab),
]


def build_ui(operator: AppConfig | None = None) -> gr.Blocks:
    """The app; ``operator`` holds the launch settings (by default those of the KINJECT_* environment)."""
    state.OPERATOR = operator if operator is not None else AppConfig.from_env(os.environ)
    with gr.Blocks(title="kinject") as demo:
        ui = header()
        for title, tab in TABS:
            with gr.Tab(title):
                ui.update(tab())
        ui["shown_preset"] = gr.State(DEFAULT_PRESET)  # the preset whose values the Train form shows
        buttons = ["prepare", "start", "resume", "stop", "eval", "ask", "merge", "export", "delete", "push"]
        ui["buttons"] = [ui[f"{name}_btn"] for name in buttons]
        ui["form_outputs"] = [*(ui["train_form"][k] for k in TRAIN_FIELDS), ui["shown_preset"]]
        # The forms a job's start reads lock while it runs (the poll sets them).
        locked = [*ui["prepare_form"].values(), ui["run_name"], ui["force"], *ui["train_form"].values()]
        locked += list(ui["eval_form"].values())
        state.LOCKED_CONTROLS = len(locked)
        ui["poll_outputs"] = [ui["status"], ui["loss_plot"], ui["plot_key"], ui["timer"], *ui["buttons"], *locked]
        wire_jobs(ui)
        wire_views(ui)
        wire_chat(ui)
        # A reloaded page re-attaches to the running job: list runs, pick the job's run, show its settings in the
        # Train form, restart polling.
        outputs = [ui["run"], ui["runs_df"], *ui["form_outputs"], *ui["poll_outputs"]]
        demo.load(on_load, None, outputs, api_name="load", show_progress="hidden")
    return demo


def wire_jobs(ui: UI) -> None:
    """The events that start, follow and stop jobs: prepare, preset, train, resume, stop, poll, evaluate, merge,
    export, push."""
    run, status, polled, form_outputs = ui["run"], ui["status"], [ui["run"], ui["plot_key"]], ui["form_outputs"]
    # Whatever starts a job, the one status poll follows it: the timer, the status area, a live Stop button and the
    # locked forms. Wired first: a click's listeners run in turn, the job's handler (which streams) to its end.
    for button in ("prepare_btn", "eval_btn", "merge_btn", "export_btn", "push_btn"):
        ui[button].click(follow_job, polled, ui["poll_outputs"], api_name=False, show_progress="hidden")
    # The prepare that makes a run fills the Train form with that run's values itself, as it selects the run: the
    # selection's own events come later, when the user may have typed in the form (see wire_views).
    prepare_outputs = [ui["table"], ui["summary"], status, run, *form_outputs]
    ui["prepare_btn"].click(
        do_prepare,
        [ui["run_name"], ui["force"], run],
        prepare_outputs,
        inputs_kwargs=ui["prepare_form"],
        api_name="prepare",
        show_progress_on=[ui["table"], ui["summary"], status, run],  # not on the Train form it fills at the end
    )
    # shown_preset: the preset whose values the form shows (see kinject.settings.resolve.preset_settings). "input", not
    # "change": the form filled from a run's config.yaml must keep that run's values, not take its preset's.
    train_form, shown_preset = ui["train_form"], ui["shown_preset"]
    preset_outputs = [train_form[k] for k in PRESET_FIELDS["train"] + PRESET_FIELDS["blocks"]]
    train_form["preset"].input(
        apply_preset, train_form["preset"], [*preset_outputs, shown_preset], api_name="preset_values"
    )
    train_inputs = {**train_form, "shown_preset": shown_preset}
    cli, cli_lines = ui["cli"], ui["cli_lines"]
    ui["start_btn"].click(start_training, [run], cli, inputs_kwargs=train_inputs, api_name="train").success(
        poll, polled, ui["poll_outputs"], api_name=False, show_progress="hidden"
    ).success(remember_cli, [run, cli, cli_lines], cli_lines, api_name=False)
    ui["resume_btn"].click(resume_training, [run], ui["cli"], inputs_kwargs=train_inputs, api_name="resume").success(
        run_settings, run, form_outputs, api_name=False
    ).success(poll, polled, ui["poll_outputs"], api_name=False, show_progress="hidden")
    ui["stop_btn"].click(stop_job, run, status, api_name="stop")
    ui["stop_btn"].click(lambda: gr.update(interactive=False), None, ui["stop_btn"], api_name=False)  # at once
    ui["timer"].tick(poll, polled, ui["poll_outputs"], api_name="poll", show_progress="hidden")
    eval_outputs = [ui["eval_md"], ui["eval_png"], ui["eval_answers"], status]
    eval_form, plan = ui["eval_form"], ui["eval_plan"]
    ui["eval_btn"].click(do_evaluate, [run], eval_outputs, inputs_kwargs=eval_form, api_name="evaluate").then(
        eval_plan,
        [run],
        plan,
        inputs_kwargs=eval_form,
        api_name=False,  # its time is known now
    )
    for name in ("quick", "max_new_tokens", "probes", "auto_probes"):
        eval_form[name].change(eval_plan, [run], plan, inputs_kwargs=eval_form, api_name=False)
    ui["merge_btn"].click(do_merge, run, status, api_name="merge")
    ui["export_btn"].click(do_export, run, status, inputs_kwargs=ui["export_form"], api_name="export")
    push_inputs = [run, ui["token"], ui["private"]]
    push_outputs = [status, ui["push_link"]]
    ui["push_btn"].click(do_push, push_inputs, push_outputs, inputs_kwargs=ui["publish_form"], api_name="push")


def wire_views(ui: UI) -> None:
    """The events that show a run: selecting it, its evaluation and settings, the Runs tab, sources, the card."""
    run = ui["run"]
    # The Train form shows a run's values when the user picks it ("input"), not on every change: a handler that
    # selects a run (prepare, delete, the page's load) fills the form itself, before the user may type in it.
    run.input(run_settings, run, ui["form_outputs"], api_name="run_settings")
    # Every poll hides its progress: its outputs hold every form (their locks), and a progress overlay over them would
    # take the user's clicks while a loaded machine runs the chain.
    run.change(poll, [run, ui["plot_key"]], ui["poll_outputs"], api_name="select_run", show_progress="hidden").then(
        view_handler(show_eval), run, [ui["eval_md"], ui["eval_png"], ui["eval_answers"]], api_name="show_eval"
    ).then(source_choices, run, ui["source_pick"], api_name=False).then(
        eval_plan, [run], ui["eval_plan"], inputs_kwargs=ui["eval_form"], api_name="eval_plan"
    ).then(cli_of, [run, ui["cli_lines"]], ui["cli"], api_name=False).then(
        view_handler(dashboard_text), run, ui["tracking_md"], api_name="dashboard"
    )
    ui["refresh"].click(view_handler(runs_table), None, ui["runs_df"], api_name="runs").then(
        lambda: (runs_update(None), runs_update(None)), None, [ui["first"], ui["second"]], api_name=False
    )
    card_inputs = [run, ui["publish_form"]["repo"]]
    ui["preview_btn"].click(view_handler(card_preview), card_inputs, ui["card_md"], api_name="card")
    delete_outputs = [run, ui["runs_df"], ui["confirm_box"], *ui["form_outputs"]]
    ui["delete_btn"].click(delete_run, [run, ui["confirm_box"]], delete_outputs, api_name="delete_run")
    compare_inputs = [ui["first"], ui["second"]]
    ui["compare_btn"].click(view_handler(compare_runs), compare_inputs, ui["compare_md"], api_name="compare").then(
        view_handler(curves_figure), compare_inputs, ui["compare_plot"], api_name="compare_curves"
    )
    source_outputs = [ui["source_text"], ui["source_df"]]
    ui["source_pick"].change(view_handler(source_view), [run, ui["source_pick"]], source_outputs, api_name="source")
    ui["show_data"].click(view_handler(augmentation_table), run, ui["data_df"], api_name="augmentation").then(
        view_handler(data_report_text), run, ui["data_report"], api_name="data_report"
    )


def wire_chat(ui: UI) -> None:
    """The Ask and Chat tabs' events."""
    run = ui["run"]
    ask_outputs = [ui["base_answer"], ui["adapter_answer"]]
    ui["ask_btn"].click(do_ask, [run, ui["question"]], ask_outputs, inputs_kwargs=ui["ask_form"], api_name="ask")
    chat_inputs = [run, ui["chat_box"], ui["talk_to"], ui["compare"], ui["chat_left"], ui["chat_right"]]
    chat_outputs = [ui["chat_left"], ui["chat_right"], ui["chat_box"]]
    chat_form, stop = ui["chat_form"], ui["chat_stop"]
    # "Stop answering" is live while an answer streams: turned on first (a click's listeners run in turn, the
    # streaming one to its end), off when the answer ends.
    for trigger in (ui["chat_btn"].click, ui["chat_box"].submit):
        trigger(lambda: gr.update(interactive=True), None, stop, api_name=False, show_progress="hidden")
    sent = [
        ui["chat_btn"].click(send_chat, chat_inputs, chat_outputs, inputs_kwargs=chat_form, api_name="chat"),
        ui["chat_box"].submit(send_chat, chat_inputs, chat_outputs, inputs_kwargs=chat_form, api_name=False),
    ]
    for event in sent:
        event.then(lambda: gr.update(interactive=False), None, stop, api_name=False)
    stop.click(lambda: gr.update(interactive=False), None, stop, cancels=sent, api_name=False)
    ui["compare"].change(chat_sides, ui["compare"], ui["chat_right"], api_name=False)
    for trigger in (ui["talk_to"].change, run.change):
        trigger(left_label, [run, ui["talk_to"]], ui["chat_left"], api_name=False, show_progress="hidden")
    ui["clear_btn"].click(lambda: ([], []), None, [ui["chat_left"], ui["chat_right"]], api_name=False)
