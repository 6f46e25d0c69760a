"""Shared fixtures: the real embedded tritonserver and a real PostgreSQL, started once per session when used."""

from __future__ import annotations

from collections.abc import Iterator
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
