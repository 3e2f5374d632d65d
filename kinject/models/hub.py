"""The Hugging Face Hub as serving and publishing both see it: Hub ids (``OWNER/NAME[@revision]``) wherever an
adapter is accepted, downloading such an adapter (once, into huggingface_hub's cache), the Hub's URL, and keeping
tokens out of messages.

Serving loads Hub adapters through this module and publishing pushes to the Hub beside it; neither imports the
other.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..runs import RunDir
from ..runtime.errors import KinjectError
from ..runtime.progress import Progress
from ..settings.places import kinject_home
from .loading import BUNDLED_ALIASES, BUNDLED_HUB_ID, BUNDLED_MODEL

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")


class HubError(KinjectError, RuntimeError):
    """A Hub adapter could not be found or downloaded; the message says why and what to do (never the token)."""


def hub_endpoint() -> str:
    """The Hub's URL: ``HF_ENDPOINT`` (read at each call, so tests and mirrors can set it) or huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def scrub(text: str, token: str | None) -> str:
    """``text`` with the token (and any ``hf_...`` token) replaced by ``***``."""
    if token:
        text = text.replace(token, "***")
    return re.sub(r"\bhf_[A-Za-z0-9]{20,}\b", "***", text)


def network_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub's HTTP client raises when the Hub cannot be reached (worth a retry)."""
    import httpx2

    return (httpx2.TransportError,)


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``spec`` is ``OWNER/NAME[@revision]`` and no local path of that name exists."""
    spec = str(spec).strip()
    m = HUB_ID.match(spec)
    if m is None or Path(spec).expanduser().exists():
        return None
    return m["repo"], m["revision"]


def download_adapter(spec: str, token: str | bool | None = None, progress: Progress | None = None) -> Path:
    """Download the adapter ``OWNER/NAME[@revision]`` into huggingface_hub's cache (once) and return its folder.
    ``token``: None takes ``$HF_TOKEN``; False downloads anonymously (a server loading what a client names).

    The repository's ``merged/`` folder is not downloaded: only the adapter is needed beside a base."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    parsed = parse_hub_id(spec)
    if parsed is None:
        raise HubError(f"{spec!r} is not a Hub id (OWNER/NAME or OWNER/NAME@revision)")
    repo_id, revision = parsed
    if token is None:
        token = os.environ.get("HF_TOKEN") or None
    progress = progress or Progress()
    progress.start(f"download {repo_id}", total=None)
    try:
        # Look before downloading: a base model named by mistake must not pull gigabytes to be refused after.
        info = HfApi(endpoint=hub_endpoint(), token=token).model_info(repo_id, revision=revision)
        if RunDir.ADAPTER_CONFIG not in {f.rfilename for f in info.siblings or []}:
            raise HubError(f"{spec} is not a PEFT adapter (no adapter_config.json in the repository)")
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                endpoint=hub_endpoint(),
                token=token,
                ignore_patterns=[f"{RunDir.MERGED_IN_REPO}/*"],
            )
        )
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {revision!r} on {hub_endpoint()}") from None
    except RepositoryNotFoundError:
        raise HubError(
            f"no Hub repository {repo_id} (and no local folder {spec}) on {hub_endpoint()}: check the name, and "
            "set HF_TOKEN when it is private"
        ) from None
    except (HfHubHTTPError, OSError, ValueError, *network_errors()) as exc:
        raise HubError(scrub(f"could not download {spec} from {hub_endpoint()}: {exc}", token)) from None
    finally:
        progress.finish()
    return folder


def adapter_run(spec: str | Path, progress: Progress | None = None) -> RunDir:
    """The run to use for ``spec``: a run folder as it is, or for a Hub id a local run folder (under the kinject
    cache) whose adapter is the downloaded one and whose settings are those the adapter was trained with."""
    parsed = parse_hub_id(str(spec))
    if parsed is None:
        return RunDir(spec)
    folder = download_adapter(str(spec), progress=progress)
    repo_id, _ = parsed
    target = kinject_home() / "hub-runs" / f"{repo_id.replace('/', '--')}--{folder.name[:12]}"
    return RunDir.from_adapter(target, folder, _adapter_settings(folder))


def _adapter_settings(folder: Path) -> dict[str, Any]:
    """A run's config for a downloaded adapter: its kinject config.yaml when it has one, with a base model that
    exists here (the adapter's ``base_model_name_or_path`` when the recorded one is another machine's folder)."""
    config = RunDir.adapter_settings(folder)
    model = (config.get("model") or {}).get("model")
    local_folder = model and model not in BUNDLED_ALIASES and model.startswith(("/", ".", "~"))
    if not model or (local_folder and not Path(model).expanduser().exists()):
        base = json.loads((folder / RunDir.ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
        config.setdefault("model", {})["model"] = BUNDLED_MODEL if base == BUNDLED_HUB_ID else base
    return config
