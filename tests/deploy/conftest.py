"""Shared by the deployment tests: paths, promtool, and the demo stack (a real tritonserver serving the demo model
live and as a canary, put there by the control plane's rollout library) with a bounded load generator."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from examples.train import train_numeric_pipeline
from tritonops.control_plane.rollout import canary, fleet_add, promote
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer
from tritonops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MODEL = "obsdemo"
"""The demo model under a name of its own: the session's model repository is shared with other tests."""
CANARY = f"{MODEL}__canary"
N_FEATURES = 6


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool binary (Debian package `prometheus`, installed by `make setup`)."""
    path = shutil.which("promtool")
    assert path, "promtool not found: run `make setup` (Debian package prometheus)"
    return path


def answers(url: str) -> bool:
    """True once ``url`` answers 200; a refused connection only means "not listening yet"."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@dataclass(frozen=True)
class DemoStack:
    server: TritonServer
    settings: Settings


@pytest.fixture(scope="session")
def deploy_server(triton_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A real tritonserver started as the GPU deployment starts its own: Triton's latency summaries on, which the
    p99 recording and alert rules and the dashboard's latency panel read."""
    options = ServerOptions(
        model_repository=triton_repository, work_dir=tmp_path_factory.mktemp("deploy_triton"), latency_summaries=True
    )
    with TritonServer(options) as server:
        yield server


@pytest.fixture(scope="session")
def demo_stack(
    deploy_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> DemoStack:
    """The demo model: v1 live, v2 a 50% canary with the response cache on (`fleet add`, `promote`, `canary`).

    The cache is the tritonops backend's (Triton's own stays off), so both versions keep Triton's latency summary;
    the canary feeds the cache panel.
    """
    cached = ConversionOptions(serving=ServingOptions(response_cache=True))
    versions = []
    for seed, options in ((0, ConversionOptions()), (1, cached)):
        trained = train_numeric_pipeline(n_rows=300, n_features=N_FEATURES, seed=seed)
        written = convert_sklearn(
            trained.model, trained.frame, name=MODEL, repository=triton_repository, options=options
        )
        versions.append(written.version)
    assert versions == [1, 2], f"{MODEL} already had versions in the session repository: {versions}"
    state = tmp_path_factory.mktemp("control_plane") / "state.db"
    settings = Settings(repository=triton_repository, state_path=state, admin_token=None)
    fleet_add(settings, deploy_server.grpc_url, actor="tests")
    promote(settings, MODEL, 1, actor="tests")
    canary(settings, MODEL, 2, 0.5, actor="tests")
    return DemoStack(deploy_server, settings)


@dataclass
class Load:
    """Requests sent so far, and how often an infinite row (an invalid request) goes to each model.

    Infinity, not NaN: the demo's random forest takes NaN (sklearn trees route missing values), every model
    refuses infinity (validation reason ``nan``)."""

    nan_every: MutableMapping[str, int] = field(default_factory=lambda: {MODEL: 25, CANARY: 0})
    ok: int = 0
    rejected: int = 0


def _send(server: TritonServer, stop: threading.Event, load: Load, seconds: float) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    rows = np.random.default_rng(0).normal(size=(4, N_FEATURES)).astype(np.float32)
    deadline = time.monotonic() + seconds
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            model = MODEL if i % 2 else CANARY
            batch = rows[i % 4 : i % 4 + 1].copy()
            every = load.nan_every.get(model, 0)
            if every and (i // 2) % every == 0:
                batch[0, 0] = np.inf
                batch[0, 1] = i  # a fresh row each time (a repeated one is refused just the same)
            tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            try:
                client.infer(model, [tensor])
                load.ok += 1
            except InferenceServerException:  # a rejected row is part of the load: counted
                load.rejected += 1
            i += 1
            time.sleep(0.004)
    finally:
        client.close()


@contextmanager
def running_load(server: TritonServer, load: Load, seconds: float = 90.0) -> Iterator[Load]:
    """Send ``load`` to demo and its canary from a thread for at most ``seconds``; stop on exit."""
    stop = threading.Event()
    thread = threading.Thread(target=_send, args=(server, stop, load, seconds), daemon=True)
    thread.start()
    try:
        yield load
    finally:
        stop.set()
        thread.join(10)
