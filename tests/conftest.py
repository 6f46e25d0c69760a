"""Shared fixtures: the real embedded tritonserver, started once per session for integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tritonops.serving.triton import ServerOptions, TritonServer


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
