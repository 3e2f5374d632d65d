"""Continuous batching for one model: requests join a running batch at the next decoding step and leave it as
soon as they finish, so concurrent requests generate together instead of one after another (what TGI's router and
vLLM's scheduler do, here with transformers' dynamic KV cache instead of paged attention).

One thread per model runs the loop: admit waiting requests into the running ``kinject.models.batch.Batch`` (the
passes every answer of kinject runs through) and step it. Every forward pass holds the shared ``compute`` lock, so
batches of different models take turns and an adapter is loaded between steps.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..models.batch import Batch
from ..models.sequences import Sequence
from .errors import ServeError

EXIT_JOIN_S = 10.0  # how long the interpreter's exit waits for a batcher to leave its forward pass
_LIVE: weakref.WeakSet[Batcher] = weakref.WeakSet()
_EXITING = threading.Event()  # set at exit: a request submitted after it ends at once, and no loop starts again


@atexit.register
def _stop_all() -> None:
    """Stop every batcher's thread before the interpreter finalizes. A daemon thread still inside a forward pass
    (the GIL released in torch's C++ code) when finalization starts is killed there, and the process aborts
    ("terminate called without an active exception")."""
    _EXITING.set()
    for batcher in list(_LIVE):
        batcher.stop(EXIT_JOIN_S)


class Batcher(Batch):
    """Runs the requests of one model in batches of at most ``max_batch_size`` rows."""

    def __init__(self, model: Callable[[], Any], compute: threading.Lock, max_batch_size: int = 8, name: str = ""):
        super().__init__(model, error_of=_generation_error)
        self.compute = compute
        self.max_batch_size = max_batch_size
        self.name = name
        self._waiting: list[Sequence] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        _LIVE.add(self)

    # ------------------------------------------------------------------------------------------- requests
    def submit(self, seq: Sequence) -> Sequence:
        """Queue ``seq`` for the next step; returns at once (wait on ``seq.done``)."""
        with self._wake:
            if _EXITING.is_set():
                seq.cancel.set()
                seq.end()
                return seq
            self._waiting.append(seq)
            if self._thread is None or not self._thread.is_alive():  # None: cleared by a loop that stopped
                self._stopping = False
                self._thread = threading.Thread(target=self._loop, name=f"kinject-batcher{self.name}", daemon=True)
                self._thread.start()
            self._wake.notify()
        return seq

    def stop(self, timeout: float | None = None) -> None:
        """End the loop after its current step (requests still running or waiting end as cancelled) and wait for
        its thread, at most ``timeout`` seconds."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------------------------------------- the loop
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._rows and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    self._end_all()
                    self._thread = None
                    return
                admitted = self._admissible()
            try:
                with self.compute:
                    self._step(admitted)
            except Exception as exc:  # noqa: BLE001 - a failed pass fails its batch, never the thread
                self._fail_all(exc, admitted)

    def _end_all(self) -> None:
        """Stopping: every running and waiting request ends as cancelled (call holding ``_wake``)."""
        for seq in self._rows + self._waiting:
            seq.cancel.set()
            seq.end()
        self._rows, self._waiting = [], []
        self._clear()

    def _admissible(self) -> list[Sequence]:
        """The waiting requests that join this step (call holding ``_wake``); cancelled ones end here."""
        for seq in [s for s in self._waiting if s.cancel.is_set()]:
            self._waiting.remove(seq)
            seq.end()
        room = self.max_batch_size - len(self._rows)
        if room <= 0 or (self._rows and not self._mergeable()):
            return []
        admitted, self._waiting = self._waiting[:room], self._waiting[room:]
        return admitted


def _generation_error(exc: BaseException) -> ServeError:
    """TGI's "generation" error (424), with what went wrong."""
    return ServeError(f"Request failed during generation: {type(exc).__name__}: {exc}", 424, "generation")
