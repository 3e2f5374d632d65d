"""One callback object through which every long stage reports progress.

Stages call ``start``/``advance``/``log``/``finish`` and poll ``should_stop``; the CLI renders a tqdm bar, the job
runner mirrors the numbers into its state, tests pass ``Progress()`` (silent) or a recorder.
"""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Silent base implementation; subclasses render or record."""

    def start(self, phase: str, total: int | None = None, unit: str = "it") -> None:
        """Begin a phase of ``total`` units (None when unknown)."""

    def advance(self, n: int = 1, **info: Any) -> None:
        """Report ``n`` more units done; ``info`` carries numbers such as loss or tokens/s."""

    def log(self, message: str) -> None:
        """A line worth showing the user (a warning, a per-item result)."""

    def finish(self) -> None:
        """End the current phase."""

    def should_stop(self) -> bool:
        """True when the user asked to stop; long loops check it between units."""
        return False


class TqdmProgress(Progress):
    """Terminal progress bars for the CLI (to stderr, so stdout stays parseable)."""

    def __init__(self) -> None:
        self._bar = None

    def start(self, phase: str, total: int | None = None, unit: str = "it") -> None:
        from tqdm.auto import tqdm

        self.finish()
        self._bar = tqdm(total=total, desc=phase, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def advance(self, n: int = 1, **info: Any) -> None:
        if self._bar is None:
            return
        if info:
            self._bar.set_postfix({k: _short(v) for k, v in info.items()}, refresh=False)
        self._bar.update(n)

    def log(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class RecordingProgress(Progress):
    """Keeps every call; used by tests and by callers that want the log afterwards."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, phase: str, total: int | None = None, unit: str = "it") -> None:
        self.events.append(("start", (phase, total)))

    def advance(self, n: int = 1, **info: Any) -> None:
        self.events.append(("advance", (n, info)))

    def log(self, message: str) -> None:
        self.events.append(("log", message))

    def finish(self) -> None:
        self.events.append(("finish", None))


def _short(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value
