"""A run's evaluation report (``eval.json``, ``eval.md``, ``eval.png``) and its ablation report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import atomic_write_file, atomic_write_json, atomic_write_text, read_json
from .paths import RunPaths
from .shapes import EVAL, load_json


class RunEvaluation(RunPaths):
    """Reads and atomic writes of the reports that compare the base with the adapter, or recipes with each other."""

    @staticmethod
    def eval_kind(data: dict[str, Any]) -> str:
        """An evaluation's kind: "stopped" (cut short by the user), "quick" (the quick set) or "full"."""
        if data.get("stopped"):
            return "stopped"
        return "quick" if (data.get("settings") or {}).get("quick") else "full"

    def eval_files(self, kind: str = "full") -> tuple[str, str, str]:
        """The file names (json, md, png) an evaluation of ``kind`` is written under."""
        stem = self._EVAL_STEMS[kind]
        return f"{stem}.json", f"{stem}.md", f"{stem}.png"

    def write_eval(self, data: dict[str, Any], markdown: str, plot: Callable[[Path], None]) -> str:
        """Write the evaluation under its kind's own name (png, md, then json; each atomically, so readers see
        the old file or the new): a quick or stopped evaluation never replaces a complete full one. Its kind."""
        kind = self.eval_kind(data)
        json_name, md_name, png_name = self.eval_files(kind)
        atomic_write_file(self.path / png_name, plot)
        atomic_write_text(self.path / md_name, markdown)
        atomic_write_json(self.path / json_name, data)
        return kind

    def _eval_kinds_newest_first(self) -> list[str]:
        """The kinds written in this run, the newest file first."""
        found = [(kind, self.path / self.eval_files(kind)[0]) for kind in self._EVAL_STEMS]
        present = [(path.stat().st_mtime, kind) for kind, path in found if path.is_file()]
        return [kind for _, kind in sorted(present, reverse=True)]

    def best_eval_kind(self) -> str | None:
        """The evaluation the Runs table and the model card show: the complete full one if there is one, else the
        newest of the others; None when the run has not been evaluated."""
        kinds = self._eval_kinds_newest_first()
        return "full" if "full" in kinds else (kinds[0] if kinds else None)

    def latest_eval_kind(self) -> str | None:
        """The kind of the evaluation written last (what the Evaluate tab shows after a run)."""
        kinds = self._eval_kinds_newest_first()
        return kinds[0] if kinds else None

    def _eval_file(self, kind: str | None, which: int) -> Path | None:
        """File ``which`` (0 json, 1 md, 2 png) of ``kind``'s evaluation, or of the best one; None when absent."""
        kind = kind or self.best_eval_kind()
        path = self.path / self.eval_files(kind)[which] if kind else None
        return path if path is not None and path.is_file() else None

    def read_eval(self, kind: str | None = None) -> dict[str, Any] | None:
        """An evaluation as a dict: ``kind``'s, or the best (see ``best_eval_kind``); None when there is none.
        RunDamagedError when the file does not parse or holds a field of the wrong type."""
        path = self._eval_file(kind, 0)
        return load_json(path, EVAL, "evaluate again, or delete the file") if path is not None else None

    def eval_markdown(self, kind: str | None = None) -> str | None:
        path = self._eval_file(kind, 1)
        return path.read_text(encoding="utf-8") if path is not None else None

    def eval_plot(self, kind: str | None = None) -> Path | None:
        return self._eval_file(kind, 2)

    def write_ablation(self, data: dict[str, Any], markdown: str) -> None:
        atomic_write_text(self.path / self._ABLATION_MD, markdown)
        atomic_write_json(self.path / self._ABLATION_JSON, data)

    def read_ablation(self) -> dict[str, Any] | None:
        path = self.path / self._ABLATION_JSON
        return read_json(path) if path.is_file() else None

    def ablation_markdown(self) -> str | None:
        path = self.path / self._ABLATION_MD
        return path.read_text(encoding="utf-8") if path.is_file() else None
