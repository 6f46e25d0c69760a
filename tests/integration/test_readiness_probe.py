"""Readiness that means "serves the desired models", on a real tritonserver: after a restart the server is up
(Triton's own /v2/health/ready says so) but empty, and `tritonops fleet ready` keeps failing until a reconcile has
loaded the desired state again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from examples.train import train_numeric_pipeline
from tritonops.control_plane import rollout
from tritonops.control_plane.fleet import reconcile
from tritonops.control_plane.readiness import not_serving
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.errors import ExitCode
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer, free_port, port_is_free
from tritonops.settings import Settings

pytestmark = pytest.mark.integration

TRITONOPS = str(Path(sys.executable).parent / "tritonops")


def _probe(settings: Settings, endpoint: str) -> tuple[int, str]:
    env = {**os.environ, "TRITONOPS_STATE": str(settings.state_path), "TRITONOPS_REPOSITORY": str(settings.repository)}
    env.pop("TRITONOPS_FLEET", None)
    done = subprocess.run([TRITONOPS, "fleet", "ready", endpoint], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_a_restarted_server_stays_not_ready_until_reconciled(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    options = ConversionOptions(
        serving=ServingOptions(instance_count=1, preferred_batch_sizes=(8,), max_batch_size=32),
        parity_rows=100,
        native_export=False,
    )
    trained = train_numeric_pipeline(n_rows=200, n_features=8, seed=0)
    convert_sklearn(trained.model, trained.frame, name="rf", repository=repository, options=options)
    settings = Settings(repository=repository, state_path=tmp_path / "state.db", admin_token=None)
    ports = (free_port(), free_port(), free_port())
    server_options = ServerOptions(
        model_repository=repository, work_dir=tmp_path / "triton", http_port=ports[0], grpc_port=ports[1],
        metrics_port=ports[2],
    )  # fmt: skip
    server = TritonServer(server_options).start()
    endpoint = server.grpc_url
    try:
        assert not_serving(settings, endpoint) == []  # nothing desired yet
        rollout.fleet_add(settings, endpoint, actor="test")
        rollout.promote(settings, "rf", 1, actor="test")
        assert not_serving(settings, endpoint) == []
        assert _probe(settings, endpoint)[0] == 0

        server.stop()  # a restart: Triton keeps nothing of the load overrides
        deadline = time.monotonic() + 30
        while not all(port_is_free(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.5)
        server = TritonServer(server_options).start()
        assert requests.get(f"http://{server.http_url}/v2/health/ready", timeout=5).status_code == 200
        code, output = _probe(settings, endpoint)
        assert code == ExitCode.CONTROL_PLANE, output
        assert f"{endpoint} does not serve the desired state yet: rf: not loaded" in output, output
        with StateStore.open(settings.state) as store:
            report = reconcile(store, repository, {}, actor="test")
        assert report.ok
        assert not_serving(settings, endpoint) == []
        code, output = _probe(settings, endpoint)
        assert code == 0 and f"{endpoint} serves the desired state" in output
    finally:
        server.stop()
