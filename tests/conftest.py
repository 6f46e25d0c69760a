"""Shared fixtures: the real embedded tritonserver (one per session), a real PostgreSQL (one per session, when
used) and headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tritonops.loadtest.postgres import PostgresCluster
from tritonops.serving.triton import ServerOptions, TritonServer
from tritonops.settings import StateLocation


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty model repository shared by the session's Triton server; tests write models into it."""
    return tmp_path_factory.mktemp("model_repository")


@pytest.fixture(scope="session")
def triton_server(triton_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A real tritonserver on free ports, explicit model control, torn down at the end of the session."""
    work = tmp_path_factory.mktemp("triton_work")
    server = TritonServer(ServerOptions(model_repository=triton_repository, work_dir=work))
    with server:
        yield server


@dataclass(frozen=True)
class RenderedPage:
    """What headless Chromium made of a page: the DOM after rendering and a screenshot."""

    dom: str
    screenshot: Path


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], RenderedPage]:
    """Open a local HTML file in Debian's headless Chromium (installed by ``make setup``) and return what it shows."""
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium is not installed: run `make setup` (it installs Debian's chromium package)")
    work = tmp_path_factory.mktemp("chromium")
    # The machine has no network: background networking, sync and updates only make Chromium retry for ever.
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]

    def render(page: Path) -> RenderedPage:
        profile = Path(tempfile.mkdtemp(dir=work, prefix="profile-"))
        url = page.resolve().as_uri()
        common = [binary, *flags, f"--user-data-dir={profile}"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True)
        shot = work / f"{page.stem}.png"
        subprocess.run(
            [*common, f"--screenshot={shot}", "--window-size=1280,2000", url],
            capture_output=True,
            timeout=120,
            check=True,
        )
        return RenderedPage(dom.stdout, shot)

    return render


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A real PostgreSQL server (initdb + pg_ctl, free port, password auth), removed at the end of the session."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def state_location(request: pytest.FixtureRequest, tmp_path: Path) -> StateLocation:
    """Where a test's control plane state lives: run once on a SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return StateLocation(path=tmp_path / "state" / "state.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()
