"""The Ask and Chat tabs' handlers: one question to base and adapter, and a streamed chat through TGI's protocol."""

from __future__ import annotations

import queue
import threading
from typing import Any

import gradio as gr

from kinject.runs import RunDir, RunError
from kinject.runtime.jobs import describe_job
from kinject.serving.backends import BackendError, stream_chat
from kinject.settings.fields import from_dict
from kinject.settings.stages import ConfigError, ModelConfig

from . import state
from .forms import form_configs, takes_fields
from .handlers import pick_run, user_error
from .views import must_wait

# what the second side of a compared chat says until its first piece arrives (every server kinject talks to
# batches requests, the embedded one included, so both sides start together)
SIDE_WAIT_NOTE = "⏳ Waiting for the server…"

TALK_TO = ["adapter", "base", "merged"]


@takes_fields("ask")
def do_ask(run: str | None = None, question: str = "", **settings: Any):
    """One question to the run's base model and to its adapter; returns (base answer, adapter answer)."""
    from kinject.models.generate import answer, load_for_run, shown_answer

    run_dir = pick_run(run)
    if not (question or "").strip():
        raise gr.Error("Type a question in the Question box.")
    if why := must_wait("Ask"):
        raise gr.Error(why)
    try:
        config = form_configs("ask", settings)["generation"]
        loaded = load_for_run(run_dir, with_adapter=run_dir.has_adapter())
    except (ConfigError, RuntimeError, RunError) as exc:
        raise user_error(str(exc)) from exc
    base = shown_answer(answer(loaded, question, config, base=True))
    adapted = "(no adapter trained for this run yet)"
    if loaded.has_adapter:
        adapted = shown_answer(answer(loaded, question, config))
    return base, adapted


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


def _chat_target(run_dir: RunDir, talk_to: str, waiting: list[dict[str, str]], right: list | None):
    """The chat backend's target for ``run_dir``, starting its server when needed; yields the ``waiting``
    conversation while a model loads (instead of a silent wait), and returns the target."""
    found: dict[str, Any] = {}
    starting = threading.Thread(target=_find_target, args=(run_dir, talk_to == "merged", found), daemon=True)
    starting.start()
    starting.join(0.3)
    if starting.is_alive():
        yield waiting, right or [], ""
        starting.join()
    if "error" in found:
        raise user_error(f"Chat is not available: {found['error']}")
    return found["target"]


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
    run_dir = pick_run(run)
    if not (message or "").strip():
        raise gr.Error("Type a message in the Message box.")
    if talk_to not in TALK_TO:
        raise gr.Error(f"Talk to one of {', '.join(TALK_TO)}.")
    try:
        generation = form_configs("ask", settings)["generation"]
    except ConfigError as exc:
        raise user_error(str(exc)) from exc
    waiting = _conversation(left) + [
        {"role": "user", "content": message},
        {"role": "assistant", "content": _chat_wait_note(run_dir)},
    ]
    target = yield from _chat_target(run_dir, talk_to, waiting, right)
    names = {"base": None, "adapter": target.adapter, "merged": target.merged}
    if talk_to != "base" and names[talk_to] is None:
        why = "train one first (Start, Train tab)" if talk_to == "adapter" else "merge it first (Merge, Runs tab)"
        raise gr.Error(f"Run {run_dir.name} has no {talk_to} model: {why}, or choose “base” in Talk to.")
    sides = [(left, names[talk_to])] + ([(right, None)] if compare else [])
    histories = [_conversation(h) + [{"role": "user", "content": message}] for h, _ in sides]
    yield from _stream_sides(target, [m for _, m in sides], histories, generation, right)


def _stream_sides(target: Any, models: list[str | None], histories: list[list[dict[str, str]]], generation, right):
    """Stream every side's answer at once, each in its own thread (a server that batches answers both together);
    yields (left, right, cleared box) as pieces arrive. Closing this generator (gradio's cancel, from "Stop
    answering") tells the threads to stop reading, which closes their streams and frees the server."""
    pieces: queue.Queue = queue.Queue()
    cancel = threading.Event()

    def read(i: int, model: str | None, asked: list[dict[str, str]]) -> None:
        try:
            for piece in stream_chat(target.endpoint_of(model), model, asked, generation):
                if cancel.is_set():
                    break
                pieces.put((i, piece))
        except Exception as exc:  # noqa: BLE001 - shown to the user, not lost in a thread
            pieces.put((i, exc))
        finally:
            pieces.put((i, None))

    started = [list(h) for h in histories]
    for i, history in enumerate(histories):
        history.append({"role": "assistant", "content": "" if i == 0 else SIDE_WAIT_NOTE})
    fresh = [i == 0 for i in range(len(histories))]  # a side's placeholder goes when its first piece comes
    for i, model in enumerate(models):
        threading.Thread(target=read, args=(i, model, started[i]), daemon=True).start()

    def shown():
        return histories[0], histories[1] if len(histories) > 1 else right or [], ""

    running = len(models)
    try:
        while running:
            i, piece = pieces.get()
            if piece is None:
                running -= 1
                if not fresh[i]:
                    histories[i][-1]["content"] = ""
                continue
            if isinstance(piece, BackendError):
                raise gr.Error(str(piece)) from piece
            if isinstance(piece, Exception):
                raise gr.Error(f"The chat failed: {type(piece).__name__}: {piece}") from piece
            if not fresh[i]:
                histories[i][-1]["content"], fresh[i] = "", True
            histories[i][-1]["content"] += piece
            yield shown()
    finally:
        cancel.set()
    yield shown()


def _find_target(run_dir: RunDir, merged: bool, found: dict[str, Any]) -> None:
    """The chat backend's target for ``run_dir`` (starting its server when needed), or the error, into ``found``."""
    try:
        found["target"] = state.CHAT.target(run_dir, merged=merged)
    except (RunError, BackendError, RuntimeError) as exc:
        found["error"] = str(exc)


def _chat_wait_note(run_dir: RunDir) -> str:
    """What a chat waits for while its server starts: the model being loaded, and a job sharing the machine."""
    try:
        model = from_dict(ModelConfig, run_dir.section("model"), "model").model
    except (ConfigError, RunError):
        model = "the run's model"
    chat = state.CHAT
    server = "kinject's embedded chat server" if chat.name == "embedded" else f"the {chat.name} chat server"
    note = f"⏳ Waiting for {server} to load {model} with run {run_dir.name}'s adapter (first message, new weights)…"
    if state.JOBS.running():
        note += f" {describe_job(state.JOBS.state()).capitalize()} is running beside it, so this takes longer."
    return note


def chat_sides(compare: bool):
    """The right-hand chatbot shows only when comparing."""
    return gr.update(visible=bool(compare), label="Base model")


def left_label(run: str | None, talk_to: str) -> Any:
    """The left chatbot names what it talks to: "Adapter of run p5", "Base model", "Merged model of run p5"."""
    what = {"adapter": "Adapter", "base": "Base model", "merged": "Merged model"}.get(talk_to, "Chat")
    return gr.update(label=f"{what} of run {run}" if run and talk_to != "base" else what)
