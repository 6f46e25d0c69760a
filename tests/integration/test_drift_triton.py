"""Drift from the real backend's counters on the real tritonserver: reference-like traffic shows no drift,
shifting one feature shows drift on exactly that feature; the metrics reader on real /metrics output."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from examples.data import sensor_frame
from tritonops.control_plane.drift import DriftConfig
from tritonops.control_plane.errors import MetricsError
from tritonops.control_plane.guardrails import drift_for_version
from tritonops.control_plane.metrics import (
    MemoryHistory,
    Snapshot,
    fleet_window,
    parse_metrics,
    rows_scored,
    scrape,
    version_stats,
    window,
)
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.converters.repository import ModelVersion, publish_live
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer, free_port

pytestmark = pytest.mark.integration

MODEL = "driftsensor"
RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return sensor_frame(n_rows=800, n_features=6, seed=3).frame


@pytest.fixture(scope="module")
def served(triton_server: TritonServer, triton_repository: Path, frame: pd.DataFrame) -> Iterator[ModelVersion]:
    data = sensor_frame(n_rows=800, n_features=6, seed=3)
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=300))])
    model.fit(data.frame, data.labels)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.1, instance_count=1), native_export=False)
    version = convert_sklearn(model, frame, name=MODEL, repository=triton_repository, options=options)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    publish_live(triton_repository, MODEL, version.version)  # loaded from disk, as after a promote
    client.load_model(MODEL)
    yield version
    client.unload_model(MODEL)
    client.close()


def _send(server: TritonServer, rows: np.ndarray, batch: int = 50) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch].astype(np.float32)
            tensor = grpcclient.InferInput("input", list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            client.infer(MODEL, [tensor])
    finally:
        client.close()


def _wait_for_rows(server: TritonServer, version: int, at_least: float, timeout: float = 15.0) -> None:
    """The backend flushes its counters every 0.1 s: wait until the rows we sent are on /metrics."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = scrape(server.metrics_url)
        if rows_scored(window(None, snapshot).delta, MODEL, version) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} rows on {server.metrics_url} after {timeout} s")


def test_reader_parses_real_triton_metrics_and_reports_a_dead_endpoint(triton_server: TritonServer) -> None:
    snapshot = scrape(triton_server.metrics_url)
    assert snapshot.has("nv_cpu_utilization")
    assert "nv_cpu_utilization" not in snapshot.counters  # a gauge
    # compared as JSON: an idle summary's quantiles are NaN, and NaN != NaN (the shared server has served models)
    assert Snapshot.from_json(snapshot.to_json()).to_json() == snapshot.to_json()
    text = requests.get(triton_server.metrics_url, timeout=5).text
    parsed = parse_metrics(text)
    assert parsed.series["nv_cpu_memory_total_bytes"] == snapshot.series["nv_cpu_memory_total_bytes"]
    with pytest.raises(MetricsError, match=r"scrape failed \(ConnectionError"):
        scrape(f"http://127.0.0.1:{free_port()}/metrics", timeout=2)


def test_reference_traffic_no_drift_then_one_shifted_feature_drifts_alone(
    triton_server: TritonServer, served: ModelVersion, frame: pd.DataFrame
) -> None:
    config = DriftConfig(min_rows=200)
    history = MemoryHistory()
    url = triton_server.metrics_url
    baseline = fleet_window([url], 3600, history)  # recorded: the window's start
    assert baseline.failures == {}
    sent = rows_scored(baseline.delta, MODEL, served.version)

    calm_rows = frame.to_numpy()[RNG.choice(len(frame), size=600, replace=True)]
    _send(triton_server, calm_rows)
    _wait_for_rows(triton_server, served.version, sent + 600)
    calm = drift_for_version(served.manifest, fleet_window([url], 3600, history), config)
    assert calm.rows == 600
    assert calm.enough_data
    assert calm.drifted_features == []
    assert not calm.dataset_drift and not calm.prediction_drift
    assert max(f.psi or 0 for f in calm.features) < 0.1

    stats = version_stats(fleet_window([url], 3600, history).windows[url])[(MODEL, str(served.version))]
    assert stats.success >= 12 and stats.error_rate == 0.0
    assert stats.avg_batch_size is not None and stats.avg_batch_size >= 50

    shifted_rows = frame.to_numpy()[RNG.choice(len(frame), size=600, replace=True)]
    column = 2
    shifted_rows[:, column] += 2.0 * frame.iloc[:, column].std()
    mark = MemoryHistory()
    fleet_window([url], 3600, mark)  # a fresh window that starts now
    _send(triton_server, shifted_rows)
    _wait_for_rows(triton_server, served.version, sent + 1200)
    shifted = drift_for_version(served.manifest, fleet_window([url], 3600, mark), config)
    assert shifted.rows == 600
    assert shifted.drifted_features == [frame.columns[column]]
    moved = shifted.features[column]
    assert moved.psi is not None and moved.psi > 0.25
    assert moved.ks is not None and moved.ks.p_value < 1e-6
    assert all((f.psi or 0) < 0.1 for i, f in enumerate(shifted.features) if i != column)
