"""The Locust scenario against the real server while the real CLI promotes and rolls back: 0 failed requests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from examples.train import train_numeric_pipeline
from tritonops.converters.convert import convert_sklearn
from tritonops.loadtest.rollout import promote_and_rollback_under_load, tritonops
from tritonops.loadtest.run import LoadSpec
from tritonops.serving.triton import TritonServer

pytestmark = [pytest.mark.perf, pytest.mark.integration]

MODEL = "lt_rollout"


def test_promote_and_rollback_under_locust_load(
    triton_server: TritonServer, triton_repository: Path, tmp_path: Path
) -> None:
    for seed in (0, 1):
        trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=seed)
        convert_sklearn(trained.model, trained.frame, name=MODEL, repository=triton_repository)
    env = {**os.environ, "TRITONOPS_REPOSITORY": str(triton_repository), "TRITONOPS_STATE": str(tmp_path / "s.db")}
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    env.pop("TRITONOPS_ADMIN_TOKEN_FILE", None)
    for setup in (["fleet", "add", triton_server.grpc_url], ["promote", MODEL, "1", "--reason", "first"]):
        step = tritonops(setup, env)
        assert step.exit_code == 0, step.output

    spec = LoadSpec(
        model=MODEL,
        repository=triton_repository,
        http_url=triton_server.http_url,
        grpc_url=triton_server.grpc_url,
        protocol="both",
        users=4,
        spawn_rate=4.0,
        duration=14,
    )
    outcome = promote_and_rollback_under_load(spec, to_version=2, ramp=2.0, hold=3.0, env=env)

    assert [(s.command[1], s.exit_code) for s in outcome.steps] == [("promote", 0), ("rollback", 0)], [
        s.output for s in outcome.steps
    ]
    lines = {line.name: line for line in outcome.load.lines}
    assert lines[f"grpc {MODEL}"].requests > 50 and lines[f"http {MODEL}"].requests > 50
    assert outcome.load.total.failures == 0, outcome.load.log_tail
    assert outcome.ok
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        assert client.is_model_ready(MODEL, "1") and not client.is_model_ready(MODEL, "2")
        client.unload_model(MODEL)
