"""Where a served adapter comes from: a folder holding ``adapter_config.json``, a kinject run, or a Hub adapter
``OWNER/NAME[@revision]`` (through ``kinject.models.hub``); with a root, local adapters only from inside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.hub import HubError, download_adapter, parse_hub_id
from ..runs import RunDir, RunError
from .errors import ServeError


def local_path(path: str | Path, root: Path | None) -> Path:
    """``path`` as a local folder: with ``root``, a relative path lies under it (never under the server's working
    folder), and ``_require_inside`` still refuses one that climbs out."""
    folder = Path(path)
    return root / folder if root is not None and not folder.is_absolute() else folder


def is_hub_adapter(path: str | Path, root: Path | None) -> bool:
    """Whether ``path`` names a Hub adapter ``OWNER/NAME[@revision]``: it has that form and no local folder (under
    ``root``, when there is one) has that name."""
    return parse_hub_id(str(path)) is not None and not local_path(path, root).exists()


def adapter_folder(path: str | Path, root: Path | None = None, hub_token: str | bool | None = None) -> Path:
    """The adapter of ``path``: the folder itself when it holds ``adapter_config.json``, a run's adapter, or a Hub
    adapter ``OWNER/NAME[@revision]`` (downloaded once into huggingface_hub's cache, with ``hub_token``; False:
    anonymously). With ``root``, a relative path is read under it, and a local adapter must lie inside it once every
    link is resolved."""
    if is_hub_adapter(path, root):
        try:
            return download_adapter(str(path), token=hub_token)
        except HubError as exc:
            raise ServeError(str(exc)) from None
    folder = local_path(path, root)
    if root is not None:
        _require_inside(folder, root, path)
    if RunDir.holds_adapter(folder):
        found = folder
    elif RunDir(folder).is_run():
        try:
            found = RunDir(folder).require_adapter()
        except RunError as exc:
            raise ServeError(str(exc)) from None
    else:
        raise ServeError(f"{path} is neither a kinject run with an adapter nor a folder with adapter_config.json")
    if root is not None:
        for part in (found, *found.iterdir()):
            _require_inside(part, root, path)
    return found


def _require_inside(path: Path, root: Path, asked: Any) -> None:
    real, top = path.resolve(), root.resolve()
    if real != top and top not in real.parents:
        raise ServeError(
            f"{asked} is outside the folder this server loads adapters from ({root}); start `kinject serve` with "
            "--adapter-root to allow another folder",
            403,
            "forbidden",
        )
