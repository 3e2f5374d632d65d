"""Run folders: ``RunDir`` is the one owner of a run folder's paths, reads, atomic writes and training lock.

Every stage reads and writes one folder (``runs/<name>/``), so each can be rerun alone and the app can show any past
run. No other module spells a file name of that folder; they ask a ``RunDir``:

    config.yaml      resolved configuration, one section per stage (never secrets)
    sources.jsonl    one row per input
    corpus/          datasets.Dataset of the cleaned documents
    augment/         generated training data (paraphrases, question-answer pairs, replay), one file pair per kind and
                     settings, each row with the passage it came from (see kinject.augment)
    blocks/<key>/    packed blocks (datasets.Dataset) and blocks.json, one folder per packing (see kinject.blocks)
    status.json      the last job's state;  metrics.jsonl  one line per logged training step
    checkpoints/     for resume;  adapter/  the trained adapter;  merged/  adapter merged into the base
    eval.json, eval.md, eval.png   the evaluation report
    ablation.json, ablation.md     recipe variants compared (their runs under ablation/)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .config import SECTIONS, ConfigError, check_types
from .errors import KinjectError


class RunError(KinjectError, RuntimeError):
    """A run folder is missing, incomplete or would be overwritten."""


class RunBusyError(RunError):
    """Another process (or job) is training this run."""


class AdapterDamagedError(RunError):
    """The adapter's weights file cannot be read (cut off by a crash or a full disk, or empty)."""


# ------------------------------------------------------------------------------------------------- atomic files


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_file(path: str | Path, write: Callable[[Path], None]) -> None:
    """Let ``write(tmp_path)`` produce a file (a plot, say), then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def read_jsonl(path: str | Path, skip_bad: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSONL file; with ``skip_bad``, lines that do not parse (a write cut off by a crash) are skipped."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if not skip_bad:
                    raise
    return rows


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@contextlib.contextmanager
def replaced_dir(target: str | Path) -> Iterator[Path]:
    """Fill a sibling temporary folder and swap it in for ``target`` only when complete.

    A failure leaves ``target`` as it was and removes the temporary folder (which may hold gigabytes of weights).
    """
    target = Path(target)
    tmp, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- the folder


class RunDir:
    """One run folder. Cheap to create; nothing is read until asked."""

    _CONFIG = "config.yaml"
    _SOURCES = "sources.jsonl"
    _CORPUS = "corpus"
    _BLOCKS = "blocks"
    _BLOCKS_JSON = "blocks.json"
    _AUGMENT = "augment"
    _STATUS = "status.json"
    _METRICS = "metrics.jsonl"
    _CHECKPOINTS = "checkpoints"
    _ADAPTER = "adapter"
    _ADAPTER_CONFIG = "adapter_config.json"  # peft's, the mark of a saved adapter
    _ADAPTER_META = "kinject.json"
    _ADAPTER_HISTORY = "training_metrics.json"
    _ADAPTER_WEIGHTS = "adapter_model.safetensors"
    _TRAINER_STATE = "trainer_state.json"
    _GUARD_STATE = "guard.json"  # in a checkpoint: the forgetting guard's checks so far and its best step
    _GUARD_WEIGHTS = "guard_best.safetensors"  # ... and that step's LoRA weights
    _MERGED = "merged"
    _MERGE_RECORD = "kinject-merge.json"  # in merged/: the sha256 of the adapter weights it was made from
    _EVAL_JSON = "eval.json"
    _EVAL_MD = "eval.md"
    _EVAL_PNG = "eval.png"
    _ABLATION_JSON = "ablation.json"
    _ABLATION_MD = "ablation.md"
    _LOCK = ".train.lock"
    _PUSHES = "pushes.jsonl"  # one row per successful push to the Hub (repo, commit, when; never the token)
    _PREVIOUS = ".previous"  # a fresh training's predecessor (checkpoints, metrics, config) until it is safe to drop

    # Names fixed by others: peft's adapter config, the Hub's model card, the merged model's folder in a Hub repo.
    ADAPTER_CONFIG = _ADAPTER_CONFIG
    CARD = "README.md"
    MERGED_IN_REPO = _MERGED

    # Names a user sees in messages and the README's file table.
    EVAL_FILES = (_EVAL_JSON, _EVAL_MD, _EVAL_PNG)

    def __init__(self, path: str | Path | RunDir):
        self.path = Path(path.path if isinstance(path, RunDir) else path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -------------------------------------------------------------------------------------------------- config
    @property
    def config_path(self) -> Path:
        return self.path / self._CONFIG

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def require(self) -> RunDir:
        """This folder, or a clear error when it is not a run folder."""
        if not self.is_run():
            raise RunError(f"{self.path} is not a run folder (no {self._CONFIG}); create it with `kinject prepare`")
        return self

    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as a dict of stage sections."""
        self.require()
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RunError(f"{self.config_path} is not valid YAML: {exc}") from None
        if data is None:  # every run's config.yaml holds its model at least: an empty one was cut off or wiped
            copy = self.adapter_dir / self._CONFIG
            hint = (
                f"copy {copy} back"
                if copy.is_file()
                else f"prepare the run again (`kinject prepare --out {self.path}`)"
            )
            raise RunError(f"{self.config_path} is empty or damaged (it holds no settings): {hint}")
        if not isinstance(data, dict):
            raise RunError(f"{self.config_path} must hold a mapping of stage sections")
        return data

    def section(self, name: str) -> dict[str, Any]:
        """One stage's section of ``config.yaml`` ({} when absent)."""
        value = self.read_config().get(name) or {}
        if not isinstance(value, dict):
            raise RunError(f"{self.config_path}: section {name!r} must be a mapping")
        if name in SECTIONS:
            try:
                check_types(SECTIONS[name], value, name)
            except ConfigError as exc:
                raise ConfigError(f"{self.config_path}: {exc}") from None
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

    # ------------------------------------------------------------------------------------------ sources, corpus
    def write_sources(self, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / self._SOURCES, rows)

    def read_sources(self) -> list[dict[str, Any]]:
        path = self.path / self._SOURCES
        return read_jsonl(path) if path.is_file() else []

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
            return load_from_disk(str(folder)), read_json(folder / self._BLOCKS_JSON)
        except Exception as exc:  # noqa: BLE001
            raise RunError(f"{folder} is corrupt ({exc}); delete it to repack, or rerun `kinject prepare`") from exc

    def save_blocks(self, key: str, dataset: Any, info: dict[str, Any]) -> None:
        """Store packed blocks under ``key``; ``blocks.json`` is written last, so a half folder is never used."""
        with replaced_dir(self._blocks_dir(key)) as tmp:
            dataset.save_to_disk(str(tmp))
            atomic_write_json(tmp / self._BLOCKS_JSON, info)

    def blocks_infos(self) -> list[dict[str, Any]]:
        """``blocks.json`` of every packing in the run, newest first."""
        root = self.path / self._BLOCKS
        found = sorted(root.glob(f"*/{self._BLOCKS_JSON}"), key=lambda p: p.stat().st_mtime, reverse=True)
        infos = []
        for path in found:
            with contextlib.suppress(OSError, ValueError):
                infos.append(read_json(path))
        return infos

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

    def augmentation_infos(self) -> list[dict[str, Any]]:
        """The summaries of every generated set, newest first."""
        found = sorted((self.path / self._AUGMENT).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        infos = []
        for path in found:
            with contextlib.suppress(OSError, ValueError):
                infos.append(read_json(path))
        return infos

    # ---------------------------------------------------------------------------------------- status, metrics
    def write_status(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.path / self._STATUS, data)

    def read_status(self) -> dict[str, Any] | None:
        """``status.json`` as a dict (None when no job ran); a damaged file raises ValueError or OSError."""
        path = self.path / self._STATUS
        return read_json(path) if path.is_file() else None

    def has_status(self) -> bool:
        return (self.path / self._STATUS).is_file()

    def append_metric(self, row: dict[str, Any]) -> None:
        with open(self.path / self._METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every logged step (a line cut off by a crash is skipped)."""
        path = self.path / self._METRICS
        return read_jsonl(path, skip_bad=True) if path.is_file() else []

    def trim_metrics(self, last_step: int) -> None:
        """Forget the steps after ``last_step`` (they are trained again on resume)."""
        if (self.path / self._METRICS).is_file():
            write_jsonl(self.path / self._METRICS, [r for r in self.read_metrics() if r.get("step", 0) <= last_step])

    def clear_metrics(self) -> None:
        (self.path / self._METRICS).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------------ checkpoints
    @property
    def checkpoints_dir(self) -> Path:
        """Where the Trainer writes ``checkpoint-N`` folders."""
        return self.path / self._CHECKPOINTS

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
        """Move the last training's checkpoints and metrics (and a copy of the settings) aside as a fresh training
        begins: it must not resume their state, but if it fails before its first checkpoint they come back."""
        aside = self.path / self._PREVIOUS
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for name in (self._CHECKPOINTS, self._METRICS):
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
        for name in (self._CHECKPOINTS, self._METRICS):
            if (aside / name).exists():
                os.replace(aside / name, self.path / name)
        if (aside / self._CONFIG).is_file():
            os.replace(aside / self._CONFIG, self.config_path)
        shutil.rmtree(aside, ignore_errors=True)

    def drop_previous(self) -> None:
        shutil.rmtree(self.path / self._PREVIOUS, ignore_errors=True)

    # ---------------------------------------------------------------------------------------- adapter, merged
    @property
    def adapter_dir(self) -> Path:
        return self.path / self._ADAPTER

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
        """The adapter's kinject metadata (status, step, train config), or {} when absent."""
        path = self.adapter_dir / self._ADAPTER_META
        return read_json(path) if path.is_file() else {}

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

    def append_push(self, row: dict[str, Any]) -> None:
        rows = self.read_pushes()
        write_jsonl(self.path / self._PUSHES, [*rows, row])

    def read_pushes(self) -> list[dict[str, Any]]:
        path = self.path / self._PUSHES
        return read_jsonl(path, skip_bad=True) if path.is_file() else []

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
    def from_adapter(cls, target: str | Path, adapter: str | Path, config: dict[str, Any]) -> RunDir:
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

    @property
    def merged_dir(self) -> Path:
        return self.path / self._MERGED

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

    # ------------------------------------------------------------------------------------------------ evaluation
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

    def copy_inputs(self, target: str | Path) -> RunDir:
        """A new run folder at ``target`` with this run's settings, sources, corpus and generated data (no blocks,
        training or evaluation): the start of a variant trained beside this one."""
        new = RunDir(target)
        new.path.mkdir(parents=True)
        shutil.copy2(self.config_path, new.config_path)
        for name in (self._SOURCES,):
            if (self.path / name).is_file():
                shutil.copy2(self.path / name, new.path / name)
        for name in (self._CORPUS, self._AUGMENT):
            if (self.path / name).is_dir():
                shutil.copytree(self.path / name, new.path / name)
        return new

    # ------------------------------------------------------------------------------------------------- locking
    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the run's training lock (non-blocking): one trainer per run folder across processes."""
        import fcntl

        with open(self.path / self._LOCK, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusyError(
                    f"{self.path} is being trained (or merged) by another process or job, which may still be "
                    "starting (loading its model): wait for it to finish, or stop it first"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def delete(self) -> None:
        """Remove this run folder, after checking that it is one (a config.yaml; not a link to elsewhere) and that
        no training holds its lock (in this process or another)."""
        self.require()
        if self.path.is_symlink():
            raise RunError(f"{self.path} is a link, not a run folder; remove it yourself")
        with self.training_lock():
            shutil.rmtree(self.path)

    # ------------------------------------------------------------------------------------------------ creating
    @staticmethod
    def check_new(target: str | Path, force: bool = False) -> None:
        """Refuse an existing, non-empty ``target`` unless ``force`` (which replaces only a kinject run or an empty
        folder), a blank, ``.`` or ``..`` ``target``, and one that cannot be written (checked before any slow work
        or deletion, so `prepare` does not fetch pages it could never save, nor replace someone's folder)."""
        if not str(target).strip() or not Path(target).name.strip() or Path(target).name in (".", ".."):
            raise RunError(
                f"{str(target)!r} is not a folder to create: give --out the name of a new run folder, e.g. runs/p5"
            )
        target = Path(target)
        if target.exists() and not force and (not target.is_dir() or any(target.iterdir())):
            raise RunError(f"{target} already exists; choose another --out or pass --force to replace it")
        if force and (target.exists() or target.is_symlink()):
            empty = target.is_dir() and not target.is_symlink() and not any(target.iterdir())
            if not empty and (target.is_symlink() or not target.is_dir() or not RunDir(target).is_kinject_run()):
                raise RunError(
                    f"{target} is not a kinject run (no config.yaml of kinject's), so --force does not replace it; "
                    "nothing was deleted: choose another --out, or move its files away yourself"
                )
        RunDir.check_writable(target)

    @staticmethod
    def check_writable(target: str | Path) -> None:
        """Raise RunError unless a run folder can be made at ``target``: its nearest existing parent is a folder in
        which a folder can be created (tried, then removed: permissions, read-only disks and quotas all show)."""
        target = Path(target).absolute()
        parent = target.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise RunError(f"cannot create {target}: {parent} is a file, not a folder")
        try:
            probe = tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent)
        except OSError as exc:
            raise RunError(f"cannot write {target}: {exc.strerror or exc} (in {parent})") from None
        os.rmdir(probe)

    @classmethod
    @contextlib.contextmanager
    def create(cls, target: str | Path, force: bool = False) -> Iterator[RunDir]:
        """Build a run folder in a sibling temporary folder and move it into place only on success.

        An existing ``target`` is refused unless ``force``; with ``force`` it is replaced only once the new one is
        complete, so a failed run leaves the earlier one intact.
        """
        target = Path(target)
        cls.check_new(target, force)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            yield cls(tmp)
            if force and target.exists():
                cls.check_new(target, force)  # still a run (or empty) after the slow work: checks before deleting
                with cls(target).training_lock():  # never swap a run out from under its training job
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                    os.replace(target, old / target.name)
                    os.replace(tmp, target)
                    shutil.rmtree(old, ignore_errors=True)
            else:
                try:
                    os.rename(tmp, target)  # fails if another prepare created it meanwhile (non-empty)
                except OSError:
                    raise RunError(f"{target} was created by someone else meanwhile; nothing overwritten") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def safetensors_complete(path: str | Path) -> bool:
    """Whether a .safetensors file is whole: an 8-byte header length, a JSON header of that length, and every
    tensor's bytes (a file cut off by a crash or a full disk fails here, not with safetensors' own error)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return False
            length = int.from_bytes(head, "little")
            size = os.fstat(fh.fileno()).st_size
            if length > size - 8:
                return False
            header = json.loads(fh.read(length))
        tensors = [t for name, t in header.items() if name != "__metadata__"]
        end = max((int(t["data_offsets"][1]) for t in tensors), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return False
    return 8 + length + end <= size


def checkpoint_step(path: Path) -> int:
    """N of a ``checkpoint-N`` folder (-1 when the name has none)."""
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1
