"""The SDK follows the canary weight the real control plane CLI sets (``tritonops canary``), then its abort."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from examples.train import train_numeric_pipeline
from tritonops.clients import ClientOptions, TritonClient
from tritonops.converters.convert import convert_sklearn
from tritonops.loadtest.rollout import tritonops
from tritonops.serving.triton import TritonServer

pytestmark = pytest.mark.integration

MODEL = "sdk_cp"


def test_sdk_routes_the_weight_set_by_tritonops_canary(
    triton_server: TritonServer, triton_repository: Path, tmp_path: Path
) -> None:
    trained = [train_numeric_pipeline(n_rows=200, n_features=6, seed=seed) for seed in (0, 1)]
    for model in trained:
        convert_sklearn(model.model, model.frame, name=MODEL, repository=triton_repository)
    env = {**os.environ, "TRITONOPS_REPOSITORY": str(triton_repository), "TRITONOPS_STATE": str(tmp_path / "s.db")}
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    env.pop("TRITONOPS_ADMIN_TOKEN_FILE", None)
    for args in (
        ["fleet", "add", triton_server.grpc_url],
        ["promote", MODEL, "1"],
        ["canary", MODEL, "2", "--weight", "0.3"],
    ):
        step = tritonops(args, env)
        assert step.exit_code == 0, step.output

    row = trained[0].frame.iloc[:1].to_numpy()
    options = ClientOptions(refresh_interval=0.2)
    with TritonClient(triton_server.grpc_url, MODEL, options=options) as client:
        split = client.canary()
        assert split is not None and (split.model, split.version, split.weight) == (f"{MODEL}__canary", 2, 0.3)
        answers = [client.predict(row) for _ in range(2000)]
        served = {(a.model, a.version) for a in answers}
        assert served == {(MODEL, "1"), (f"{MODEL}__canary", "2")}
        assert abs(sum(a.canary for a in answers) / 2000 - 0.3) <= 0.02

        step = tritonops(["canary", MODEL, "--abort"], env)
        assert step.exit_code == 0, step.output
        time.sleep(0.3)
        assert client.canary() is None
        assert {client.predict(row).model for _ in range(50)} == {MODEL}
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as admin:
        assert not admin.is_model_ready(f"{MODEL}__canary")
        admin.unload_model(MODEL)
