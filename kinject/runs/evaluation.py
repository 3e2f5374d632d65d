"""A run's evaluation report (``eval.json``, ``eval.md``, ``eval.png``) and its ablation report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import atomic_write_file, atomic_write_json, atomic_write_text, read_json
from .paths import RunPaths


class RunEvaluation(RunPaths):
    """Reads and atomic writes of the reports that compare the base with the adapter, or recipes with each other."""

    def write_eval(self, data: dict[str, Any], markdown: str, plot: Callable[[Path], None]) -> None:
        """Write eval.png, eval.md and, last, eval.json (each atomically: readers see the old file or the new)."""
        atomic_write_file(self.path / self._EVAL_PNG, plot)
        atomic_write_text(self.path / self._EVAL_MD, markdown)
        atomic_write_json(self.path / self._EVAL_JSON, data)

    def read_eval(self) -> dict[str, Any] | None:
        """``eval.json`` as a dict, or None when the run has not been evaluated."""
        path = self.path / self._EVAL_JSON
        return read_json(path) if path.is_file() else None

    def eval_markdown(self) -> str | None:
        path = self.path / self._EVAL_MD
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def eval_plot(self) -> Path | None:
        path = self.path / self._EVAL_PNG
        return path if path.is_file() else None

    def write_ablation(self, data: dict[str, Any], markdown: str) -> None:
        atomic_write_text(self.path / self._ABLATION_MD, markdown)
        atomic_write_json(self.path / self._ABLATION_JSON, data)

    def read_ablation(self) -> dict[str, Any] | None:
        path = self.path / self._ABLATION_JSON
        return read_json(path) if path.is_file() else None

    def ablation_markdown(self) -> str | None:
        path = self.path / self._ABLATION_MD
        return path.read_text(encoding="utf-8") if path.is_file() else None
