"""A run's data: the sources table, the corpus, the packed blocks and the generated training data."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .errors import RunError
from .files import atomic_write_json, newest_json, read_json, read_jsonl, replaced_dir, write_jsonl
from .paths import RunPaths
from .shapes import AUGMENT_INFO, BLOCKS_INFO, SOURCE, load_jsonl, problem

# datasets' load_from_disk is not safe from two threads at once (its progress bar's shared lock can be missing:
# "'tqdm' object has no attribute '_lock'"); the app's views may load a corpus while a job does.
_LOADING = threading.Lock()


class RunData(RunPaths):
    """Reads and atomic writes of the data every stage before training leaves in the run."""

    # ------------------------------------------------------------------------------------------ sources, corpus
    def write_sources(self, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / self._SOURCES, rows)

    def read_sources(self) -> list[dict[str, Any]]:
        """One row per input ([] before any); RunDamagedError when a line is not a source's row."""
        return load_jsonl(self.path / self._SOURCES, SOURCE, "prepare the run again")

    def save_corpus(self, dataset: Any) -> None:
        dataset.save_to_disk(str(self.path / self._CORPUS))

    def has_corpus(self) -> bool:
        return (self.path / self._CORPUS).is_dir()

    def load_corpus(self):
        """The corpus ``datasets.Dataset``; a clear error when the run has none."""
        from datasets import load_from_disk

        if not self.has_corpus():
            raise RunError(f"{self.path} has no corpus: run `kinject prepare` first")
        try:
            with _LOADING:
                return load_from_disk(str(self.path / self._CORPUS))
        except Exception as exc:  # noqa: BLE001 - whatever datasets raises for a damaged folder
            raise RunError(f"{self.path}: the corpus is unreadable ({exc}); rerun `kinject prepare --force`") from exc

    # ---------------------------------------------------------------------------------------------------- blocks
    def _blocks_dir(self, key: str) -> Path:
        return self.path / self._BLOCKS / key

    def load_blocks(self, key: str) -> tuple[Any, dict[str, Any]] | None:
        """The blocks packed under ``key`` and their ``blocks.json``, or None when not packed yet."""
        from datasets import load_from_disk

        folder = self._blocks_dir(key)
        if not (folder / self._BLOCKS_JSON).is_file():
            return None
        try:
            with _LOADING:
                return load_from_disk(str(folder)), read_json(folder / self._BLOCKS_JSON)
        except Exception as exc:  # noqa: BLE001
            raise RunError(f"{folder} is corrupt ({exc}); delete it to repack, or rerun `kinject prepare`") from exc

    def save_blocks(self, key: str, dataset: Any, info: dict[str, Any]) -> None:
        """Store packed blocks under ``key``; ``blocks.json`` is written last, so a half folder is never used."""
        with replaced_dir(self._blocks_dir(key)) as tmp:
            dataset.save_to_disk(str(tmp))
            atomic_write_json(tmp / self._BLOCKS_JSON, info)

    def blocks_infos(self) -> list[dict[str, Any]]:
        """``blocks.json`` of every packing in the run, newest first (a damaged one is skipped, as a cache)."""
        infos = newest_json((self.path / self._BLOCKS).glob(f"*/{self._BLOCKS_JSON}"))
        return [info for info in infos if problem(info, BLOCKS_INFO) is None]

    # ------------------------------------------------------------------------------------------------ augmentation
    def load_augmentation(self, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        """Rows and summary of one generated set (``name``: kind and cache key), or None when not generated."""
        folder = self.path / self._AUGMENT
        info = folder / f"{name}.json"
        if not info.is_file():
            return None
        try:
            return read_jsonl(folder / f"{name}.jsonl"), read_json(info)
        except (OSError, ValueError) as exc:
            raise RunError(f"{folder / name}.* is damaged ({exc}); delete it to generate it again") from exc

    def save_augmentation(self, name: str, rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
        """Store a generated set; its summary is written last, so a half-written set is never used."""
        folder = self.path / self._AUGMENT
        write_jsonl(folder / f"{name}.jsonl", rows)
        atomic_write_json(folder / f"{name}.json", info)

    def write_user_questions(self, rows: list[dict[str, Any]]) -> None:
        """Keep the user's own question-answer pairs (already read and checked), replacing earlier ones."""
        write_jsonl(self.path / self._QUESTIONS, rows)

    def read_user_questions(self) -> list[dict[str, Any]]:
        """The user's own question-answer pairs ([] when none were given)."""
        path = self.path / self._QUESTIONS
        try:
            return read_jsonl(path) if path.is_file() else []
        except (OSError, ValueError) as exc:
            raise RunError(f"{path} is damaged ({exc}); give the question file again (--questions)") from exc

    @property
    def data_report_path(self) -> Path:
        return self.path / self._DATA_REPORT

    def write_data_report(self, report: dict[str, Any]) -> None:
        atomic_write_json(self.data_report_path, report)

    def read_data_report(self) -> dict[str, Any] | None:
        """The last data report, or None when none was written or it is unreadable."""
        path = self.data_report_path
        try:
            data = read_json(path) if path.is_file() else None
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def augmentation_infos(self) -> list[dict[str, Any]]:
        """The summaries of every generated set, newest first (a damaged one is skipped, as a cache)."""
        infos = newest_json((self.path / self._AUGMENT).glob("*.json"))
        return [info for info in infos if problem(info, AUGMENT_INFO) is None]
