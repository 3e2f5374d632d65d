"""A run's records: its settings (``config.yaml``), the last job's status, the logged steps and the pushes."""

from __future__ import annotations

import json
from typing import Any

import yaml

from ..settings.stages import SECTIONS, ConfigError
from ..settings.fields import check_types, describe_fields
from .errors import ConfigDamagedError, RunDamagedError
from .files import atomic_write_json, atomic_write_text, read_jsonl, write_jsonl
from .paths import RunPaths
from .shapes import METRIC, STATUS, load_json, load_jsonl, shown


class RunRecords(RunPaths):
    """Reads and atomic writes of the run's settings, status, metrics and push log."""

    # ---------------------------------------------------------------------------------------------------- config
    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as a dict of stage sections, each a mapping whose values have their fields' types
        (ConfigDamagedError naming the file and field otherwise)."""
        self.require()
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RunDamagedError(f"{self.config_path} is not valid YAML: {exc}", self.config_path) from None
        if data is None:  # every run's config.yaml holds its model at least: an empty one was cut off or wiped
            copy = self.adapter_dir / self._CONFIG
            hint = (
                f"copy {copy} back"
                if copy.is_file()
                else f"prepare the run again (`kinject prepare --out {self.path}`)"
            )
            message = f"{self.config_path} is empty or damaged (it holds no settings): {hint}"
            raise RunDamagedError(message, self.config_path)
        if not isinstance(data, dict):
            raise self._config_damaged("", f"must hold a mapping of stage sections, got {shown(data)}")
        for name, value in data.items():
            if name in SECTIONS:
                self._check_section(name, value)
        return data

    def _check_section(self, name: str, value: Any) -> None:
        """Refuse a known section that is not a mapping, or holds a value of the wrong type for its field."""
        if value is None:
            return
        if not isinstance(value, dict):
            raise self._config_damaged(name, f"section {name!r} must be a mapping, got {shown(value)}")
        try:
            check_types(SECTIONS[name], value, name)
        except ConfigError as exc:
            raise self._config_damaged(name, str(exc)) from None
        for info in describe_fields(SECTIONS[name]):  # check_types leaves text fields alone; a view formats them
            found = value.get(info.name)
            if info.kind == "str" and info.name in value and not isinstance(found, str):
                if not (found is None and info.optional):
                    raise self._config_damaged(name, f"{name}: {info.name} must be text, got {shown(found)}")

    def _config_damaged(self, section: str, detail: str) -> ConfigDamagedError:
        return ConfigDamagedError(f"{self.config_path}: {detail}", self.config_path, section, detail)

    def section(self, name: str) -> dict[str, Any]:
        """One stage's section of ``config.yaml`` ({} when absent), checked by ``read_config``."""
        value = self.read_config().get(name) or {}
        if not isinstance(value, dict):  # a section kinject does not declare, which read_config leaves alone
            raise self._config_damaged(name, f"section {name!r} must be a mapping, got {shown(value)}")
        return value

    def is_kinject_run(self) -> bool:
        """Whether this folder is a run kinject made (what ``--force`` may replace): its config.yaml is a mapping
        of kinject's stage sections, not merely a file of that name."""
        if not self.config_path.is_file():
            return False
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return False
        return isinstance(data, dict) and bool(data) and set(data) <= set(SECTIONS)

    def write_config(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    def update_config(self, **sections: dict[str, Any]) -> None:
        """Replace the named sections of ``config.yaml``, keeping the others."""
        data = self.read_config()
        data.update(sections)
        self.write_config(data)

    # ---------------------------------------------------------------------------------------- status, metrics
    def write_status(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.path / self._STATUS, data)

    def read_status(self) -> dict[str, Any] | None:
        """``status.json`` as a dict (None when no job ran); RunDamagedError when it is not a job's state."""
        return load_json(self.path / self._STATUS, STATUS, "delete it: the run's next job writes it again")

    def has_status(self) -> bool:
        return (self.path / self._STATUS).is_file()

    def append_metric(self, row: dict[str, Any]) -> None:
        with open(self.path / self._METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every logged step (a line cut off by a crash is skipped; one of the wrong shape is RunDamagedError)."""
        hint = "fix or delete that line; without the file the run only loses its loss curve"
        return load_jsonl(self.path / self._METRICS, METRIC, hint, skip_bad=True)

    def trim_metrics(self, last_step: int) -> None:
        """Forget the steps after ``last_step`` (they are trained again on resume)."""
        if (self.path / self._METRICS).is_file():
            write_jsonl(self.path / self._METRICS, [r for r in self.read_metrics() if r.get("step", 0) <= last_step])

    def clear_metrics(self) -> None:
        (self.path / self._METRICS).unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------------------- pushes
    def append_push(self, row: dict[str, Any]) -> None:
        rows = self.read_pushes()
        write_jsonl(self.path / self._PUSHES, [*rows, row])

    def read_pushes(self) -> list[dict[str, Any]]:
        path = self.path / self._PUSHES
        return read_jsonl(path, skip_bad=True) if path.is_file() else []
