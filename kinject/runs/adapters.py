"""A run's trained adapter (weights, metadata, history, model card), the model merged from it and its export."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import AdapterDamagedError, RunError
from .files import atomic_write_json, atomic_write_text, read_json, replaced_dir, safetensors_complete
from .records import RunRecords
from .shapes import ADAPTER_META, load_json

_Self = TypeVar("_Self", bound="RunAdapters")


class RunAdapters(RunRecords):
    """Reads and atomic writes of ``adapter/`` and ``merged/``; a failed write leaves the earlier folder intact."""

    # --------------------------------------------------------------------------------------------------- adapter
    @classmethod
    def holds_adapter(cls, folder: str | Path) -> bool:
        """Whether ``folder`` is a saved PEFT adapter (a run's ``adapter/``, or any such folder)."""
        return (Path(folder) / cls._ADAPTER_CONFIG).is_file()

    def has_adapter(self) -> bool:
        return (self.adapter_dir / self._ADAPTER_CONFIG).is_file()

    def adapter_weights(self) -> Path:
        return self.adapter_dir / self._ADAPTER_WEIGHTS

    def require_adapter(self) -> Path:
        """The adapter folder, or a clear error before anything slow happens."""
        self.require()
        if not self.has_adapter():
            raise RunError(f"{self.path} has no trained adapter yet: train it first (`kinject train {self.path}`)")
        stem = self._ADAPTER_WEIGHTS.split(".", 1)[0]  # .safetensors, or .bin for an older foreign adapter
        if not any(self.adapter_dir.glob(f"{stem}.*")):
            raise RunError(f"{self.adapter_dir} has no weights (an interrupted copy?): train again or resume")
        if self.adapter_weights().is_file() and not safetensors_complete(self.adapter_weights()):
            raise AdapterDamagedError(
                f"{self.adapter_weights()} is damaged (truncated or empty): retrain or resume the run "
                f"(`kinject train {self.path}`, or with --resume)"
            )
        return self.adapter_dir

    def adapter_digest(self) -> str:
        """The sha256 of the adapter's weights: which adapter a merged model was made from ("" without them)."""
        import hashlib

        if not self.adapter_weights().is_file():
            return ""
        digest = hashlib.sha256()
        with open(self.adapter_weights(), "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def read_adapter_meta(self) -> dict[str, Any]:
        """The adapter's kinject metadata (status, step, train config), or {} when absent; RunDamagedError when
        it is not what training writes."""
        hint = "train the run again, or resume it"
        return load_json(self.adapter_dir / self._ADAPTER_META, ADAPTER_META, hint) or {}

    def write_adapter(self, save: Callable[[Path], None], meta: dict[str, Any], history: list[dict[str, Any]]) -> Path:
        """Write ``adapter/`` atomically: ``save(folder)`` puts the weights and tokenizer there, then the run's
        config, the training history and kinject's metadata go beside them. The old adapter stays until done."""
        with replaced_dir(self.adapter_dir) as tmp:
            save(tmp)
            shutil.copy2(self.config_path, tmp / self._CONFIG)
            atomic_write_json(tmp / self._ADAPTER_HISTORY, history)
            atomic_write_json(tmp / self._ADAPTER_META, meta)
        return self.adapter_dir

    def read_adapter_history(self) -> list[dict[str, Any]]:
        path = self.adapter_dir / self._ADAPTER_HISTORY
        return read_json(path) if path.is_file() else []

    def write_card(self, text: str) -> None:
        """Keep the model card beside the adapter (``adapter/README.md``, replacing peft's template)."""
        atomic_write_text(self.adapter_dir / self.CARD, text)

    @classmethod
    def adapter_settings(cls, folder: str | Path) -> dict[str, Any]:
        """The kinject settings saved beside an adapter (its run's ``config.yaml``), or {} for a foreign one."""
        path = Path(folder) / cls._CONFIG
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except yaml.YAMLError:
            data = {}
        return data if isinstance(data, dict) else {}

    @classmethod
    def from_adapter(cls: type[_Self], target: str | Path, adapter: str | Path, config: dict[str, Any]) -> _Self:
        """A run folder at ``target`` whose ``adapter/`` links to ``adapter`` (a downloaded one) with ``config``;
        evaluation and answers of that adapter are written there. Made again when it exists."""
        run = cls(target)
        run.path.mkdir(parents=True, exist_ok=True)
        link = run.adapter_dir
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == Path(adapter).resolve():
                run.write_config(config)
                return run
            shutil.rmtree(link) if link.is_dir() and not link.is_symlink() else link.unlink()
        os.symlink(Path(adapter).resolve(), link)
        run.write_config(config)
        return run

    # ---------------------------------------------------------------------------------------------------- merged
    def has_merged(self) -> bool:
        return (self.merged_dir / "config.json").is_file()

    def write_merged(self, save: Callable[[Path], None], record: dict[str, Any] | None = None) -> Path:
        """Write ``merged/`` atomically through ``save(folder)``, with ``record`` (which adapter it was made from,
        ``adapter_sha256``) beside the weights."""
        with replaced_dir(self.merged_dir) as tmp:
            save(tmp)
            if record is not None:
                atomic_write_json(tmp / self._MERGE_RECORD, record)
        return self.merged_dir

    def merge_record_path(self) -> Path:
        return self.merged_dir / self._MERGE_RECORD

    def read_merge_record(self) -> dict[str, Any]:
        """What ``merged/`` says it was made from ({} when it records nothing: made by hand, or by an older
        kinject)."""
        try:
            data = read_json(self.merge_record_path())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def merged_is_current(self) -> bool:
        """Whether ``merged/`` was made from the adapter the run holds now (a retraining makes it stale)."""
        made_from = self.read_merge_record().get("adapter_sha256")
        return bool(made_from) and made_from == self.adapter_digest()

    # ---------------------------------------------------------------------------------------------------- export
    @classmethod
    def export_gguf_name(cls, qtype: str) -> str:
        """The name of the GGUF file of type ``qtype`` in ``export/`` (``model-q8_0.gguf``)."""
        return cls._EXPORT_GGUF.format(qtype)

    @classmethod
    def export_modelfile_name(cls) -> str:
        """The name of the Ollama Modelfile in ``export/``."""
        return cls._MODELFILE

    @classmethod
    def export_adapter_name(cls) -> str:
        """The name of the LoRA adapter's GGUF file in ``export/``."""
        return cls._EXPORT_ADAPTER

    @classmethod
    def export_base_name(cls, qtype: str) -> str:
        """The name of the base model's GGUF file of type ``qtype`` in ``export/`` (``base-q8_0.gguf``)."""
        return cls._EXPORT_BASE.format(qtype)

    @classmethod
    def export_adapter_modelfile_name(cls) -> str:
        """The name of the Modelfile that puts the adapter over the base in ``export/``."""
        return cls._ADAPTER_MODELFILE

    def export_files(self) -> dict[str, Path]:
        """What ``export/`` holds now, by name (empty when nothing was exported)."""
        folder = self.export_dir
        return {p.name: p for p in sorted(folder.iterdir())} if folder.is_dir() else {}

    def write_export(self, save: Callable[[Path], None]) -> Path:
        """Write ``export/`` atomically through ``save(folder)``: a failure or an interruption
        leaves the earlier ``export/`` (or none) as it was, and no temporary folder."""
        with replaced_dir(self.export_dir) as tmp:
            save(tmp)
        return self.export_dir
