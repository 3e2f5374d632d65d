"""A run folder as a whole: created atomically in a sibling folder, copied as a variant's start, locked, deleted."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from .errors import RunError
from .files import exclusive_lock
from .records import RunRecords

_Self = TypeVar("_Self", bound="RunFolders")


class RunFolders(RunRecords):
    """The life of the folder itself: checks before creating, the atomic creation, a copy, the lock, the deletion."""

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the run's training lock (non-blocking): one trainer per run folder across processes."""
        busy = (
            f"{self.path} is being trained (or merged) by another process or job, which may still be "
            "starting (loading its model): wait for it to finish, or stop it first"
        )
        with exclusive_lock(self.path / self._LOCK, busy):
            yield

    def delete(self) -> None:
        """Remove this run folder, after checking that it is one (a config.yaml; not a link to elsewhere) and that
        no training holds its lock (in this process or another)."""
        self.require()
        if self.path.is_symlink():
            raise RunError(f"{self.path} is a link, not a run folder; remove it yourself")
        with self.training_lock():
            shutil.rmtree(self.path)

    def copy_inputs(self: _Self, target: str | Path) -> _Self:
        """A new run folder at ``target`` with this run's settings, sources, corpus and generated data (no blocks,
        training or evaluation): the start of a variant trained beside this one."""
        new = type(self)(target)
        new.path.mkdir(parents=True)
        shutil.copy2(self.config_path, new.config_path)
        for name in (self._SOURCES,):
            if (self.path / name).is_file():
                shutil.copy2(self.path / name, new.path / name)
        for name in (self._CORPUS, self._AUGMENT):
            if (self.path / name).is_dir():
                shutil.copytree(self.path / name, new.path / name)
        return new

    @classmethod
    def check_new(cls, target: str | Path, force: bool = False) -> None:
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
            if not empty and (target.is_symlink() or not target.is_dir() or not cls(target).is_kinject_run()):
                raise RunError(
                    f"{target} is not a kinject run (no config.yaml of kinject's), so --force does not replace it; "
                    "nothing was deleted: choose another --out, or move its files away yourself"
                )
        cls.check_writable(target)

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
    def create(cls: type[_Self], target: str | Path, force: bool = False) -> Iterator[_Self]:
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
