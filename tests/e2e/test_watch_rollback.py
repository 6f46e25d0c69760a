"""`tritonops watch` as a subprocess against the real tritonserver rolls back a really bad version by itself.

Version 1 imputes missing values; version 2 (the regression) was trained without the imputer, so the backend
refuses every request with a NaN (the manifest says ``allow_nan: false``). Live traffic where a third of the
requests carry a NaN makes version 2's error rate ~33 %: watch must roll back to version 1 within its window and
the audit log must say why. Then ``tritonops drift --json`` and the feedback commands run against the same server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.utils import InferenceServerException

from examples.data import sensor_frame
from tests.cli_json import check_json_output
from tests.conftest import RenderedPage
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.control_plane.rollout import canary, fleet_add, promote
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.errors import ExitCode
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer
from tritonops.settings import Settings

pytestmark = pytest.mark.e2e

MODEL = "watchsensor"
POLICY = """
interval_seconds: 0.5
window_seconds: 3
min_requests: 20
consecutive: 2
action: auto
error_rate: {max: 0.05}
drift: null
canary: null
"""


@pytest.fixture(scope="module")
def settings(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    data = sensor_frame(n_rows=600, n_features=6, seed=5)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
    tolerant = Pipeline(
        [("impute", SimpleImputer()), ("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=300))]
    )
    strict = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=300))])
    for model in (tolerant, strict):
        model.fit(data.frame, data.labels)
        convert_sklearn(model, data.frame, name=MODEL, repository=triton_repository, options=options)
    state = tmp_path_factory.mktemp("watch_state") / "state.db"
    settings = Settings(repository=triton_repository, state_path=state, admin_token=None)
    fleet_add(settings, triton_server.grpc_url, actor="test")
    promote(settings, MODEL, 1, actor="test", reason="first release")
    promote(settings, MODEL, 2, actor="test", reason="the regression")
    return settings


class Traffic:
    """Single-row requests to the live model in a thread; every third row has a NaN."""

    def __init__(self, server: TritonServer, rows: np.ndarray, targets: tuple[str, ...] = (MODEL,)) -> None:
        self.targets = targets
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.rows = rows.astype(np.float32)
        self.ok = 0
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        i = 0
        while not self.stop.is_set() and i < 20_000:  # bounded: at most 20k requests
            row = self.rows[i % len(self.rows)].copy()
            if i % 3 == 0 or (len(self.targets) > 1 and i % 4 == 1):
                row[1] = np.nan
            tensor = grpcclient.InferInput("input", [1, row.size], "FP32")
            tensor.set_data_from_numpy(row.reshape(1, -1))
            try:
                self.client.infer(self.targets[i % len(self.targets)], [tensor])
                self.ok += 1
            except InferenceServerException:
                self.refused += 1
            i += 1
            time.sleep(0.005)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.client.close()


def _cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRITONOPS_STATE": str(settings.state_path),
        "TRITONOPS_REPOSITORY": str(settings.repository),
        "COLUMNS": "200",
    }
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "tritonops.control_plane.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def rolled_back(
    settings: Settings, triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.CompletedProcess[str], float, Traffic]]:
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    rows = sensor_frame(n_rows=600, n_features=6, seed=5).frame.to_numpy()
    with Traffic(triton_server, rows) as traffic:
        started = time.monotonic()
        result = _cli(
            settings,
            "watch",
            MODEL,
            "--policy",
            str(policy),
            "--metrics-url",
            triton_server.metrics_url,
            "--iterations",
            "60",
            "--exit-on-action",
        )
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # traffic keeps flowing on the restored version
    yield result, elapsed, traffic


def test_watch_rolls_back_the_bad_version_within_its_window(
    rolled_back: tuple[subprocess.CompletedProcess[str], float, Traffic], settings: Settings
) -> None:
    result, elapsed, traffic = rolled_back
    assert result.returncode == ExitCode.GUARDRAIL_ACTED, result.stdout + result.stderr
    assert "rollback" in result.stdout and "live 2 -> 1" in result.stdout
    # window 3 s + 2 breaches in a row at 0.5 s intervals + the rollback itself (~2 s): well under 15 s
    assert elapsed < 15, f"took {elapsed:.1f} s"
    with StateStore.open(settings.state) as store:
        state = store.model(MODEL)
        events = store.audit(MODEL)
    assert state is not None and state.live == 1
    breach = [e for e in events if e.action == "guardrail-breach"]
    assert len(breach) == 1
    assert breach[0].from_version == 2 and "live v2 error_rate" in breach[0].reason
    evidence = json.loads(breach[0].detail)
    (check,) = evidence["checks"]
    assert check["guardrail"] == "error_rate" and check["value"] > 0.2 and check["limit"] == 0.05
    rollback_events = [e for e in events if e.action == "rollback"]
    assert [e.result for e in rollback_events] == ["started", "ok"]
    assert all(e.reason.startswith("guardrail breach: live v2 error_rate") for e in rollback_events)
    assert rollback_events[-1].from_version == 2 and rollback_events[-1].to_version == 1
    assert traffic.refused > 20 and traffic.ok > 20


def test_after_the_rollback_rows_with_nan_are_answered_again(
    rolled_back: tuple[subprocess.CompletedProcess[str], float, Traffic], triton_server: TritonServer
) -> None:
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    try:
        row = np.array([[1.0, np.nan, 0.5, 2.0, -1.0, 0.0]], dtype=np.float32)
        tensor = grpcclient.InferInput("input", [1, 6], "FP32")
        tensor.set_data_from_numpy(row)
        result = client.infer(MODEL, [tensor])
        assert result.as_numpy("probabilities").shape == (1, 3)
    finally:
        client.close()


def test_drift_cli_reports_json_a_table_and_a_page(
    rolled_back: tuple[subprocess.CompletedProcess[str], float, Traffic],
    settings: Settings,
    triton_server: TritonServer,
    tmp_path: Path,
    chromium: Callable[[Path], RenderedPage],
) -> None:
    url = triton_server.metrics_url
    page = tmp_path / "drift.html"
    as_json = _cli(settings, "drift", MODEL, "--metrics-url", url, "--window", "load", "--json", "--report", str(page))
    assert as_json.returncode == 0, as_json.stderr
    assert f"drift report written to {page}" in as_json.stderr
    rendered = chromium(page).dom
    assert f"<title>Drift report: {MODEL} version 1</title>" in rendered
    assert rendered.count('<svg class="chart"') == 7  # six features and the class mix
    report = check_json_output("drift", as_json.stdout)
    assert report["model"] == MODEL and report["version"] == 1 and report["window_seconds"] is None
    assert report["rows"] > 20 and [f["name"] for f in report["features"]] == [f"f{i:02d}" for i in range(6)]
    assert report["notes"] and "since the version was loaded" in report["notes"][0]
    table = _cli(settings, "drift", MODEL, "--metrics-url", url, "--window", "10m")
    assert table.returncode == 0, table.stderr
    assert "f05" in table.stdout and "(class mix)" in table.stdout
    assert "only" in table.stdout and "s of history" in table.stdout  # the json run recorded the first snapshot
    bad = _cli(settings, "drift", MODEL, "--metrics-url", url, "--window", "soon")
    assert bad.returncode == ExitCode.USAGE and "expected a positive duration" in bad.stderr


def test_feedback_cli_tracks_accuracy_per_version(settings: Settings) -> None:
    with FeedbackStore(settings.state_path) as store:  # what the SDK records for each answered request
        for i, (version, label, truth) in enumerate([(1, "alpha", "alpha"), (1, "beta", "gamma"), (2, "beta", "")]):
            store.record_prediction(f"req-{i}", MODEL, version, label)
            if truth:
                store.record_feedback(f"req-{i}", truth)
    labelled = _cli(settings, "feedback", "label", "req-2", "beta")
    assert labelled.returncode == 0, labelled.stderr
    shown = _cli(settings, "feedback", "accuracy", MODEL)
    assert shown.returncode == 0, shown.stderr
    assert "0.5000" in shown.stdout and "1.0000" in shown.stdout
    unknown = _cli(settings, "feedback", "label", "never-sent", "alpha")
    assert unknown.returncode == ExitCode.CONTROL_PLANE and "no prediction recorded" in unknown.stderr


def test_watch_aborts_a_bad_canary_and_leaves_live_alone(
    rolled_back: tuple[subprocess.CompletedProcess[str], float, Traffic],
    settings: Settings,
    triton_server: TritonServer,
    tmp_path: Path,
) -> None:
    canary(settings, MODEL, 2, 0.5, actor="test", reason="try the regression again")
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "interval_seconds = 0.5\nwindow_seconds = 3\nmin_requests = 20\n[error_rate]\nmax = 0.05\n"
        "[canary]\nmax_error_rate_increase = 0.05\naccuracy_alpha = 0.05\n"
    )
    rows = sensor_frame(n_rows=600, n_features=6, seed=5).frame.to_numpy()
    # a third of the requests reach the canary alias directly, as a raw HTTP/gRPC client taking part would
    with Traffic(triton_server, rows, targets=(MODEL, MODEL, f"{MODEL}__canary")):
        result = _cli(
            settings,
            "watch",
            MODEL,
            "--policy",
            str(policy),
            "--metrics-url",
            triton_server.metrics_url,
            "--iterations",
            "60",
            "--exit-on-action",
        )
    assert result.returncode == ExitCode.GUARDRAIL_ACTED, result.stdout + result.stderr
    assert "abort-canary" in result.stdout
    with StateStore.open(settings.state) as store:
        state = store.model(MODEL)
        events = store.audit(MODEL)
    assert state is not None and (state.live, state.canary) == (1, None)
    breach = [e for e in events if e.action == "guardrail-breach"][-1]
    assert breach.from_version == 2 and "canary v2" in breach.reason and "live v1" not in breach.reason
    assert [e.result for e in events if e.action == "abort-canary"] == ["started", "ok"]
