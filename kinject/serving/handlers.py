"""Requests turned into engine calls and TGI's response bodies (what vLLM keeps in ``serving.py``).

Generation runs in a thread of its own per request, and parsing, tokenizing and chat templates in a small pool
(``off_loop``); the event loop only waits, so ``/health`` answers while a large request is worked on. A plain request
whose client goes away, or a stream whose client closes it, sets the generation's ``cancel`` event, so it ends
within a token and frees the model and its queue slot.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import protocol as p
from .engine import Engine, Generation, Params, TokenOut
from .errors import ServeError
from .metrics import Metrics

DISCONNECT_POLL_S = 0.25
PREP_WORKERS = 4  # requests parsed, tokenized or templated at once (more wait for a worker); the CPU bounds them
_PREP = ThreadPoolExecutor(PREP_WORKERS, thread_name_prefix="kinject-prep")

Job = tuple[str | None, list[int], Params]


async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in the preparation pool: work that grows with the request (parsing, tokenizing, templating,
    encoding a long answer) never runs on the event loop. A pool of its own, not the loop's default one, which
    FastAPI's plain routes share."""
    return await asyncio.get_running_loop().run_in_executor(_PREP, fn, *args)


def json_bytes(value: Any) -> bytes:
    """``value`` as FastAPI's JSONResponse writes it, for an answer encoded off the event loop."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a new thread (not the loop's small default pool, which 16 waiting requests would fill)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(value)

    def work() -> None:
        try:
            value, error = fn(*args), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
            value, error = None, exc
        loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name="kinject-request", daemon=True).start()
    return await future


class Serving:
    """One engine's requests: validate, queue, generate, shape the answer; counts every outcome in ``metrics``."""

    def __init__(self, engine: Engine, defaults: Params, metrics: Metrics):
        self.engine, self.defaults, self.metrics = engine, defaults, metrics
        self.fingerprint = "kinject-native"

    # --------------------------------------------------------------------------------------------- running
    async def run(self, request: Any, jobs: list[Job]) -> list[Generation]:
        """Generate each job in turn (one queue slot for the request), cancelled when the client goes away."""
        started, cancel = time.monotonic(), threading.Event()
        release = self.engine.slot()

        def work() -> list[Generation]:
            try:
                return [self.engine.generate(t, ids, params, cancel=cancel) for t, ids, params in jobs]
            finally:
                release()

        task = asyncio.ensure_future(in_thread(work))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
                if not task.done() and await request.is_disconnected():
                    cancel.set()
            gens = task.result()
        except asyncio.CancelledError:
            cancel.set()
            raise
        self.metrics.finished(gens, time.monotonic() - started)
        return gens

    def stream(self, jobs: list[Job], cancel: threading.Event) -> AsyncIterator:
        """Events ``("token", job_index, TokenOut)`` and ``("done", job_index, Generation)`` as they are made; an
        error ends them as a ``ServeError``. Leaving the iterator early (the client closed) cancels generation.
        The queue slot is taken now, so a full queue is refused before a response starts."""
        started = time.monotonic()
        release = self.engine.slot()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def put(event: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        def work() -> None:
            gens = []
            try:
                for i, (target, ids, params) in enumerate(jobs):
                    g = self.engine.generate(target, ids, params, lambda t, i=i: put(("token", i, t)), cancel)
                    gens.append(g)
                    put(("done", i, g))
                self.metrics.finished(gens, time.monotonic() - started)
            except ServeError as exc:
                self.metrics.failed(exc.error_type)
                put(exc)
            except Exception as exc:  # noqa: BLE001 - the stream is already open: the error goes as an event
                self.metrics.failed("incomplete_generation")
                put(ServeError(f"{type(exc).__name__}: {exc}", 500, "incomplete_generation"))
            finally:
                release()
                put(None)

        # Started now, not on first iteration: the slot is given back by this thread even if no event is read.
        threading.Thread(target=work, name="kinject-stream", daemon=True).start()

        async def iterate() -> AsyncIterator:
            try:
                while (event := await events.get()) is not None:
                    yield event
            finally:
                cancel.set()

        return iterate()

    # ----------------------------------------------------------------------------------------- preparing
    async def prepare_generate(self, body: Any) -> Job:
        return await off_loop(self._generate_job, body)

    async def prepare_chat(self, body: Any) -> Job:
        return await off_loop(self._chat_job, body)

    async def prepare_completion(self, body: Any) -> list[Job]:
        return await off_loop(self._completion_jobs, body)

    def _generate_job(self, body: Any) -> Job:
        target = self.engine.resolve(body.parameters.adapter_id)
        params = p.generate_params(body.parameters, self.defaults)
        if not body.inputs:
            raise ServeError("`inputs` cannot be empty")
        ids = self.engine.encode(target, body.inputs)
        self.engine.check_length(ids, params)
        return target, ids, params

    def _chat_job(self, body: Any) -> Job:
        p.check_chat_fields(body)
        target = self.engine.resolve(body.model)
        params = p.openai_params(body, self.defaults)
        ids = self.engine.chat_ids(target, p.chat_messages(body))
        self.engine.check_length(ids, params)
        return target, ids, params

    def _completion_jobs(self, body: Any) -> list[Job]:
        p.check_completion_fields(body)
        target = self.engine.resolve(body.model)
        params = p.openai_params(body, self.defaults)
        jobs = []
        for prompt in p.prompts(body):
            if not prompt:
                raise ServeError("`prompt` cannot be empty")
            ids = self.engine.encode(target, prompt)
            self.engine.check_length(ids, params)
            jobs.append((target, ids, params))
        return jobs

    # ---------------------------------------------------------------------------------------------- tokens
    def _tokenizer_of(self, name: Any) -> str | None:
        # As TGI, tokenizing reads only the text: adapters share the base's tokenizer, a merged model has its own.
        return name if isinstance(name, str) and name in self.engine.merged else None

    async def tokenize(self, body: Any) -> bytes:
        """``/tokenize``'s answer, as JSON."""
        target = self._tokenizer_of(body.parameters.get("adapter_id"))
        return await off_loop(lambda: json_bytes(self.engine.tokenize(target, body.inputs)))

    async def chat_tokenize(self, body: Any) -> bytes:
        """``/chat_tokenize``'s answer, as JSON: the conversation as the chat template writes it, in tokens."""
        target = self._tokenizer_of(body.model)

        def work() -> bytes:
            text = self.engine.chat_text(target, p.chat_messages(body))
            tokens = self.engine.tokenize(target, text, "the templated conversation")
            return json_bytes({"templated_text": text, "tokenize_response": tokens})

        return await off_loop(work)

    def model_name(self, target: str | None) -> str:
        return target if target is not None else self.engine.model_id

    # ------------------------------------------------------------------------------------------- answers
    async def generate(self, request: Any, body: Any) -> dict[str, Any]:
        job = await self.prepare_generate(body)
        (g,) = await self.run(request, [job])
        text = (body.inputs + g.text) if body.parameters.return_full_text else g.text
        out: dict[str, Any] = {"generated_text": text}
        if body.parameters.details or body.parameters.decoder_input_details:
            out["details"] = p.generate_details(g)
        return out

    async def generate_events(self, body: Any, events: AsyncIterator) -> AsyncIterator[str]:
        """``/generate_stream``'s events: one per token, the last carrying the text and details."""
        pending: dict[str, Any] | None = None
        count = 0
        async for event in events:
            if isinstance(event, ServeError):
                yield p.sse(event.body())
                return
            kind, _, payload = event
            if kind == "token":
                if pending is not None:
                    yield p.sse(pending)
                count += 1
                pending = {"index": count, "token": p.token(payload), "generated_text": None, "details": None}
            elif pending is not None:
                g: Generation = payload
                pending["generated_text"] = (body.inputs + g.text) if body.parameters.return_full_text else g.text
                if body.parameters.details:
                    pending["details"] = p.stream_details(g)
                yield p.sse(pending)

    async def chat(self, request: Any, body: Any) -> dict[str, Any]:
        job = await self.prepare_chat(body)
        (g,) = await self.run(request, [job])
        return {
            "object": "chat.completion",
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": self.model_name(job[0]),
            "system_fingerprint": self.fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": g.text},
                    "logprobs": p.chat_logprobs(g.tokens) if body.logprobs else None,
                    "finish_reason": p.openai_finish(g.finish_reason),
                }
            ],
            "usage": p.usage(g),
        }

    async def chat_events(self, body: Any, job: Any, events: AsyncIterator) -> AsyncIterator[str]:
        created, chat_id, name = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}", self.model_name(job[0])

        def chunk(token: TokenOut | None, finish: str | None, use: Any = None) -> str:
            """One token's chunk (its text empty for a special token), or with ``use`` the usage chunk."""
            choices = []
            if use is None:
                delta = {"role": "assistant", "content": "" if token is None or token.special else token.text}
                logprobs = p.chat_logprobs([token]) if body.logprobs and token and not token.special else None
                choices = [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]
            return p.sse(
                {
                    "object": "chat.completion.chunk",
                    "id": chat_id,
                    "created": created,
                    "model": name,
                    "system_fingerprint": self.fingerprint,
                    "choices": choices,
                    "usage": use,
                }
            )

        pending: TokenOut | None = None
        async for event in events:
            if isinstance(event, ServeError):
                yield p.sse({"error": {"message": str(event), "http_status_code": event.status}})
                break
            kind, _, payload = event
            if kind == "token":
                if pending is not None:
                    yield chunk(pending, None)
                pending = payload
            else:
                g: Generation = payload
                if pending is not None:
                    yield chunk(pending, p.openai_finish(g.finish_reason))
                if body.stream_options and body.stream_options.include_usage:
                    yield chunk(None, None, p.usage(g))
        yield p.sse("[DONE]")

    async def completion(self, request: Any, body: Any) -> dict[str, Any]:
        jobs = await self.prepare_completion(body)
        gens = await self.run(request, jobs)
        return {
            "object": "text_completion",
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": self.model_name(jobs[0][0]),
            "system_fingerprint": self.fingerprint,
            "choices": [
                {"index": i, "text": g.text, "logprobs": None, "finish_reason": p.openai_finish(g.finish_reason)}
                for i, g in enumerate(gens)
            ],
            "usage": p.usage(gens),
        }

    async def completion_events(self, jobs: list, events: AsyncIterator) -> AsyncIterator[str]:
        """One chunk per token (``finish_reason`` "" until the prompt's last), as TGI streams completions."""
        created, cid, name = int(time.time()), f"cmpl-{uuid.uuid4().hex[:24]}", self.model_name(jobs[0][0])

        def chunk(index: int, text: str, finish: str) -> str:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
            return p.sse(
                {
                    "object": "text_completion",
                    "id": cid,
                    "created": created,
                    "model": name,
                    "system_fingerprint": self.fingerprint,
                    "choices": [choice],
                }
            )

        pending: TokenOut | None = None
        async for event in events:
            if isinstance(event, ServeError):
                yield p.sse(event.body())
                break
            kind, index, payload = event
            if kind == "token":
                if pending is not None:
                    yield chunk(index, pending.text, "")
                pending = payload
            else:
                if pending is not None:
                    yield chunk(index, "" if pending.special else pending.text, p.openai_finish(payload.finish_reason))
                pending = None
        yield p.sse("[DONE]")
