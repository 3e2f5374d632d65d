"""A run's checkpoints (for resume), the forgetting guard's state beside them, and a fresh training's predecessor."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from .files import atomic_write_file, atomic_write_json, read_json
from .records import RunRecords


def checkpoint_step(path: Path) -> int:
    """N of a ``checkpoint-N`` folder (-1 when the name has none)."""
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


class RunCheckpoints(RunRecords):
    """The ``checkpoint-N`` folders transformers' Trainer writes, and what kinject keeps beside them."""

    def last_checkpoint(self) -> Path | None:
        """The newest complete ``checkpoint-N`` folder, if any."""
        if not self.checkpoints_dir.is_dir():
            return None
        done = [p for p in self.checkpoints_dir.glob("checkpoint-*") if (p / self._TRAINER_STATE).is_file()]
        return max(done, key=checkpoint_step, default=None)

    def checkpoint_at(self, step: int) -> Path:
        """The checkpoint folder of ``step`` (named as transformers' Trainer names it)."""
        return self.checkpoints_dir / f"checkpoint-{step}"

    def checkpoint_files(self, checkpoint: Path) -> tuple[Path, Path]:
        """A checkpoint's (LoRA weights, trainer state) files."""
        return checkpoint / self._ADAPTER_WEIGHTS, checkpoint / self._TRAINER_STATE

    def save_guard_state(self, checkpoint: Path, state: dict[str, Any], weights: dict[str, Any] | None) -> None:
        """The forgetting guard's state beside a checkpoint, so a resumed training keeps its earlier checks."""
        if weights:
            from safetensors.torch import save_file

            atomic_write_file(checkpoint / self._GUARD_WEIGHTS, lambda tmp: save_file(weights, str(tmp)))
        atomic_write_json(checkpoint / self._GUARD_STATE, state)

    def load_guard_state(self, checkpoint: Path) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """(state, best weights or None) saved beside ``checkpoint``, or None when it has none."""
        path = checkpoint / self._GUARD_STATE
        if not path.is_file():
            return None
        state = read_json(path)
        weights = None
        if (checkpoint / self._GUARD_WEIGHTS).is_file():
            from safetensors.torch import load_file

            weights = load_file(str(checkpoint / self._GUARD_WEIGHTS))
        return state, weights

    def clear_checkpoints(self) -> None:
        shutil.rmtree(self.checkpoints_dir, ignore_errors=True)

    def set_aside_previous(self) -> None:
        """Move the last training's checkpoints, metrics and TensorBoard events (and a copy of the settings) aside
        as a fresh training begins: it must not resume their state, but if it fails before its first checkpoint
        they come back."""
        aside = self.path / self._PREVIOUS
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for name in (self._CHECKPOINTS, self._METRICS, self._TENSORBOARD):
            if (self.path / name).exists():
                os.replace(self.path / name, aside / name)
        if self.config_path.is_file():
            shutil.copy2(self.config_path, aside / self._CONFIG)

    def restore_previous(self) -> None:
        """Put back what ``set_aside_previous`` moved (the failed training's own checkpoints and metrics go)."""
        aside = self.path / self._PREVIOUS
        if not aside.is_dir():
            return
        self.clear_checkpoints()
        self.clear_metrics()
        shutil.rmtree(self.tensorboard_dir, ignore_errors=True)
        for name in (self._CHECKPOINTS, self._METRICS, self._TENSORBOARD):
            if (aside / name).exists():
                os.replace(aside / name, self.path / name)
        if (aside / self._CONFIG).is_file():
            os.replace(aside / self._CONFIG, self.config_path)
        shutil.rmtree(aside, ignore_errors=True)

    def drop_previous(self) -> None:
        shutil.rmtree(self.path / self._PREVIOUS, ignore_errors=True)
