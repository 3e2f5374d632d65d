"""Atomic file writes, JSON and JSONL reads, whole-folder replacement and the exclusive lock of a run.

Readers of a run folder (the app polling a job, a second process) must never see half a file, so every write goes
to a temporary file or folder beside its target and is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import RunBusyError


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
    """Write ``data`` as indented JSON, atomically."""
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
    """Write ``rows`` as one JSON object a line, atomically."""
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
    """A JSON file's value (OSError or ValueError when it is missing or damaged)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def newest_json(paths: Iterable[Path]) -> list[Any]:
    """The values of the JSON files among ``paths``, newest first; unreadable ones are skipped."""
    infos = []
    for path in sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True):
        with contextlib.suppress(OSError, ValueError):
            infos.append(read_json(path))
    return infos


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


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` (across processes); RunBusyError(``busy``) if held."""
    import fcntl

    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
