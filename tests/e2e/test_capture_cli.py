"""``tritonops capture set|export|off`` against the real tritonserver: the setting reaches the live model's config
(and survives a promote), the exported Parquet holds exactly the rows sent with their labels, and off removes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tritonclient.grpc as grpcclient

from examples.data import sensor_frame
from tritonops.contract.names import PARAM_CAPTURE
from tritonops.control_plane.endpoint import GrpcEndpoint
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.control_plane.rollout import fleet_add, promote
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.capture import hash_value
from tritonops.serving.triton import TritonServer
from tritonops.settings import Settings

pytestmark = pytest.mark.e2e

MODEL = "capsensor"
ROWS = 150


@pytest.fixture(scope="module")
def settings(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    from sklearn.linear_model import LogisticRegression

    data = sensor_frame(n_rows=400, n_features=4, seed=8)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
    for c in (0.5, 2.0):
        model = LogisticRegression(C=c, max_iter=300).fit(data.frame, data.labels)
        convert_sklearn(model, data.frame, name=MODEL, repository=triton_repository, options=options)
    work = tmp_path_factory.mktemp("capture_cli")
    settings = Settings(
        repository=triton_repository, state_path=work / "state.db", admin_token=None, capture_dir=work / "capture"
    )
    fleet_add(settings, triton_server.grpc_url, actor="test")
    promote(settings, MODEL, 1, actor="test", reason="first release")
    return settings


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRITONOPS_STATE": str(settings.state_path),
        "TRITONOPS_REPOSITORY": str(settings.repository),
        "TRITONOPS_CAPTURE_DIR": str(settings.capture_dir),
        "TRITONOPS_ACTOR": "carol",
    }
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "tritonops", *args], env=env, capture_output=True, text=True, timeout=180
    )


def _capture_parameter(server: TritonServer) -> str | None:
    endpoint = GrpcEndpoint(server.grpc_url, {})
    try:
        config = endpoint.observe(MODEL).config
    finally:
        endpoint.close()
    assert config is not None
    return config.parameters[PARAM_CAPTURE].string_value if PARAM_CAPTURE in config.parameters else None


def test_capture_set_export_off(settings: Settings, triton_server: TritonServer, tmp_path: Path) -> None:
    feature = sensor_frame(n_rows=10, n_features=4, seed=8).frame.columns
    refused = _cli(settings, "capture", "set", MODEL, "--share", "1", "--hash", "no_such_column")
    assert refused.returncode != 0 and "['no_such_column'] are not features of it" in refused.stderr
    assert _capture_parameter(triton_server) is None  # a refused setting changed nothing

    done = _cli(settings, "capture", "set", MODEL, "--share", "1", "--hash", feature[0], "--reason", "label them")
    assert done.returncode == 0, done.stderr
    assert json.loads(_capture_parameter(triton_server) or "{}")["share"] == 1.0
    promote(settings, MODEL, 2, actor="test", reason="capture follows the live model")
    assert json.loads(_capture_parameter(triton_server) or "{}")["hash"] == [feature[0]]

    rows = sensor_frame(n_rows=ROWS, n_features=4, seed=9).frame.to_numpy(dtype=np.float32)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    labels = {}
    try:
        for i, row in enumerate(rows):
            tensor = grpcclient.InferInput("input", [1, row.size], "FP32")
            tensor.set_data_from_numpy(row.reshape(1, -1))
            answer = client.infer(MODEL, [tensor], request_id=f"s-{i}")
            labels[f"s-{i}"] = answer.as_numpy("label").reshape(-1)[0]
    finally:
        client.close()
    with FeedbackStore(settings.state_path) as feedback:  # truth arrives for the first ten
        for i in range(10):
            feedback.record_prediction(f"s-{i}", MODEL, 2, labels[f"s-{i}"].decode())
            feedback.record_feedback(f"s-{i}", "ok")

    out = tmp_path / "rows.parquet"
    deadline = time.monotonic() + 60
    summary: dict[str, object] = {}
    while time.monotonic() < deadline:  # spool files close every 10 s
        exported = _cli(settings, "capture", "export", MODEL, "--since", "10m", "-o", str(out), "--json")
        if exported.returncode == 0:
            summary = json.loads(exported.stdout)
            if summary["rows"] == ROWS:
                break
        time.sleep(2)
    assert summary == {"model": MODEL, "rows": ROWS, "labelled": 10, "output": str(out)}
    table = pq.read_table(out).to_pandas()
    assert sorted(table["request_id"]) == sorted(labels)
    by_id = table.set_index("request_id")
    for i in (0, 17, ROWS - 1):
        record = by_id.loc[f"s-{i}"]
        assert record[f"feature.{feature[0]}"] == hash_value(float(rows[i][0]))
        assert record[f"feature.{feature[1]}"] == float(rows[i][1])
        assert record["label"] == labels[f"s-{i}"].decode() and record["version"] == 2
    assert by_id.loc["s-3", "true_label"] == "ok" and pd.isna(by_id.loc["s-30", "true_label"])

    stopped = _cli(settings, "capture", "off", MODEL)
    assert stopped.returncode == 0, stopped.stderr
    assert _capture_parameter(triton_server) is None
    history = _cli(settings, "history", MODEL)
    assert "capture" in history.stdout and "carol" in history.stdout
