"""Shared fixtures. Server code lives in httpserver.py; this file only wires it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserver import SiteServer, serve
from model_fixtures import bundled_model_dir, bundled_tokenizer, tiny_model_dir, tiny_run  # noqa: F401

SAMPLES = Path(__file__).parent / "data" / "samples" / "aws-summit-nyc-2023"


@pytest.fixture(autouse=True, scope="session")
def _replay_cache_of_the_session(tmp_path_factory) -> None:
    """Replay answers shared between runs are kept in the session's own folder, never the user's cache."""
    from kinject.augment import cache

    cache.REPLAY_DIR = tmp_path_factory.mktemp("replay")


@pytest.fixture(autouse=True, scope="session")
def _tracking_of_the_session(tmp_path_factory) -> Iterator[None]:
    """Trainings track their curves (trackio by default) into the session's own folder, never the user's cache."""
    import os

    before = os.environ.get("KINJECT_TRACKING")
    os.environ["KINJECT_TRACKING"] = str(tmp_path_factory.mktemp("tracking"))
    yield
    if before is None:
        os.environ.pop("KINJECT_TRACKING", None)
    else:
        os.environ["KINJECT_TRACKING"] = before


@pytest.fixture(autouse=True)
def _replay_cache_of_the_test(tmp_path_factory, monkeypatch) -> None:
    """... and each test starts with none: what a test generates is its own."""
    from kinject.augment import cache

    monkeypatch.setattr(cache, "REPLAY_DIR", tmp_path_factory.mktemp("replay"))


@pytest.fixture
def web_jobs(tmp_path, monkeypatch):
    """The web face's state for one test: an empty runs folder (tmp_path/runs) and a job manager of its own, as
    every view and handler reads them (``kinject.web.state.X``)."""
    from kinject.runtime.jobs import JobManager
    from kinject.web import state

    jobs = JobManager()
    monkeypatch.setattr(state, "RUNS_ROOT", tmp_path / "runs")
    monkeypatch.setattr(state, "JOBS", jobs)
    return jobs


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The sample pages (copied from shared/samples so tests never read outside the repo)."""
    return SAMPLES


@pytest.fixture(scope="session")
def site_server(sample_dir: Path) -> Iterator[SiteServer]:
    """Loopback server on 127.0.0.1 with the sample pages and the error routes of httpserver.py."""
    with serve("127.0.0.1", root=sample_dir) as server:
        yield server


@pytest.fixture(scope="session")
def site(site_server: SiteServer) -> str:
    """Base URL of ``site_server``, e.g. http://127.0.0.1:40123."""
    return site_server.base_url


@pytest.fixture(scope="session")
def site2(sample_dir: Path) -> Iterator[str]:
    """A second server on 127.0.0.2 (another loopback address), for redirect tests."""
    with serve("127.0.0.2", root=sample_dir) as server:
        yield server.base_url


@pytest.fixture(scope="session")
def p5_prepared(site: str, tmp_path_factory) -> Path:
    """The EC2 P5 sample page prepared over loopback with the bundled model (no training)."""
    from kinject.corpus.prepare import prepare
    from kinject.settings.sources import FetchConfig, InputsConfig
    from kinject.settings.stages import PrepareConfig

    config = PrepareConfig(
        inputs=InputsConfig(urls=[f"{site}/ec2-p5.html"]), fetch=FetchConfig(allow_private_urls=True)
    )
    return prepare(config, tmp_path_factory.mktemp("p5") / "run").run_dir


@pytest.fixture(scope="session")
def p5_trained(p5_prepared: Path) -> Path:
    """``p5_prepared`` after training with the cpu-demo preset (minutes on a CPU; shared by several tests)."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "kinject", "train", str(p5_prepared), "--preset", "cpu-demo"], check=True)
    return p5_prepared
