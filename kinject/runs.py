"""Run folders: atomic file writes and the layout every stage shares (see the design's ``runs/<name>/``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CONFIG = "config.yaml"
SOURCES = "sources.jsonl"
CORPUS = "corpus"
BLOCKS = "blocks"
BLOCKS_JSON = "blocks.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MERGED = "merged"
EVAL_JSON = "eval.json"


class RunError(RuntimeError):
    """A run folder is missing, incomplete or would be overwritten."""


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


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


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


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a dict of stage sections."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run folder (no {CONFIG}); create it with `kinject prepare`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RunError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} must hold a mapping of stage sections")
    return data


def write_config(run_dir: str | Path, data: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / CONFIG, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def update_config(run_dir: str | Path, section: str, values: dict[str, Any]) -> None:
    """Replace one stage's section of ``config.yaml``, keeping the others."""
    data = read_config(run_dir)
    data[section] = values
    write_config(run_dir, data)


@contextlib.contextmanager
def staged_dir(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Build a run folder in a sibling temporary folder and move it into place only on success.

    An existing ``target`` is refused unless ``force``; with ``force`` it is replaced only once the new one is
    complete, so a failed run leaves the earlier one intact.
    """
    target = Path(target)
    if target.exists() and not force and (not target.is_dir() or any(target.iterdir())):
        raise RunError(f"{target} already exists; choose another --out or pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if force and target.exists():
            with training_lock(target):  # never swap a run out from under its training job
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


class RunBusyError(RunError):
    """Another process (or job) is training this run."""


@contextlib.contextmanager
def training_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run's training lock (non-blocking): one trainer per run folder across processes."""
    import fcntl

    path = Path(run_dir) / ".train.lock"
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(f"{run_dir} is being trained by another process or job; stop that one first") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
