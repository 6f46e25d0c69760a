"""A drifted stream through a real Triton triggers exactly one retraining webhook, end to end.

The real controller (``tritonops controller start``, its guardrails stepping every second over a 4 s window) watches
a model served by the real embedded tritonserver; a plain gRPC client sends rows like the training sample, then a
stream shifted by three standard deviations. The controller's guardrails see the drift in Triton's counters, its
dispatcher calls the webhook of ``TRITONOPS_WEBHOOKS`` and a real HTTP receiver checks the HMAC signature. The
drifted stream keeps flowing for several more guardrail periods: the dedup key (one per live version) keeps it to
one delivery, and ``tritonops webhooks log`` shows it with the skipped repeats. The model captures a quarter of its
requests: the controller's HTML drift report (``GET /v1/models/{model}/drift/report``) lists the most drifted
captured rows, which are rows of the drifted stream.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from examples.data import sensor_frame
from tests.cli_json import check_json_output
from tests.e2e.conftest import Controller, running_controller
from tests.webhook_receiver import SECRET, Receiver, serve_receiver
from tritonops.control_plane.drift import PREDICTION
from tritonops.control_plane.guardrails import parse_policy_data
from tritonops.control_plane.policies import store_policy
from tritonops.control_plane.rollout import fleet_add, promote, set_capture
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer
from tritonops.settings import Settings

pytestmark = pytest.mark.e2e

MODEL = "retrainsensor"
FEATURES = 4
PERIOD_SECONDS = 1.0
POLICY = {
    "interval_seconds": PERIOD_SECONDS,
    "window_seconds": 4,
    "min_requests": 20,
    "error_rate": None,
    "canary": None,
    "action": "alert",  # record only: nothing to roll back to, and the webhook is what is under test
    "drift": {"on_dataset_drift": True, "thresholds": {"min_rows": 200}},
}
T = TypeVar("T")


def _wait(check: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


class Stream:
    """Batches of 20 rows over gRPC from a thread, about 50 batches a second, each with a request id starting with
    ``phase``; ``rows`` and ``phase`` are swapped to drift."""

    def __init__(self, grpc_url: str, rows: npt.NDArray[np.float32]) -> None:
        self.grpc_url = grpc_url
        self.rows = rows
        self.phase = "reference"
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = grpcclient.InferenceServerClient(self.grpc_url)
        rng = np.random.default_rng(0)
        try:
            for number in range(10_000):  # bounded: at most about 200 s
                if self._stop.is_set():
                    break
                batch = self.rows[rng.integers(0, len(self.rows), 20)]
                tensor = grpcclient.InferInput("input", list(batch.shape), "FP32")
                tensor.set_data_from_numpy(batch)
                try:
                    client.infer(MODEL, [tensor], request_id=f"{self.phase}-{number}")
                    self.sent += len(batch)
                except grpcclient.InferenceServerException:
                    self.failed += 1
                time.sleep(0.02)
        finally:
            client.close()

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


@dataclass
class Setup:
    controller: Controller
    receiver: Receiver
    state: Path
    reference: npt.NDArray[np.float32]
    viewer: str
    stream: Stream


@pytest.fixture(scope="module")
def setup(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("drift_webhook")
    data = sensor_frame(n_rows=600, n_features=FEATURES, seed=31)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
    model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(data.frame, data.labels)
    convert_sklearn(model, data.frame, name=MODEL, repository=triton_repository, options=options)
    settings = Settings(
        repository=triton_repository, state_path=work / "state.db", admin_token=None, capture_dir=work / "capture"
    )
    fleet_add(settings, triton_server.grpc_url, actor="test")
    promote(settings, MODEL, 1, actor="test", reason="the model to watch")
    set_capture(settings, MODEL, 0.25, actor="test", reason="rows to retrain on")
    with StateStore.open(settings.state) as store:
        store_policy(store, MODEL, parse_policy_data(POLICY), actor="test", repository=triton_repository)
    (work / "secret").write_text(SECRET + "\n")
    with serve_receiver() as receiver:
        hooks = work / "webhooks.yaml"
        hooks.write_text(
            "webhooks:\n"
            f"  - name: retrain\n    url: {receiver.url}/retrain\n    secret_file: {work / 'secret'}\n"
            "    events: [drift]\n    backoff_seconds: 0.1\n"
        )
        with running_controller(
            work,
            triton_repository,
            settings.state_path,
            None,
            "--metrics-url",
            triton_server.metrics_url,
            environment={"TRITONOPS_WEBHOOKS": str(hooks), "TRITONOPS_CAPTURE_DIR": str(settings.capture_dir)},
        ) as controller:
            viewer = controller.token("drift-viewer", "viewer")
            reference = data.frame.to_numpy(dtype=np.float32)
            with Stream(triton_server.grpc_url, reference) as stream:
                yield Setup(controller, receiver, settings.state_path, reference, viewer, stream)


def _drift(setup: Setup) -> dict[str, Any]:
    answer = setup.controller.api("GET", f"/v1/models/{MODEL}/drift", setup.viewer, params={"window": "4s"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _webhooks_log(state: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tritonops", "webhooks", "log", MODEL, "--json"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}, "TRITONOPS_STATE": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return list(check_json_output("webhooks log", done.stdout)["deliveries"])


def test_a_drifted_stream_triggers_exactly_one_signed_retraining_webhook(
    setup: Setup, triton_server: TritonServer
) -> None:
    stream = setup.stream
    report = _wait(lambda: (r := _drift(setup))["enough_data"] and r, 60, "a drift verdict on reference rows")
    assert report["dataset_drift"] is False, report
    time.sleep(4 * PERIOD_SECONDS)  # several guardrail steps see reference-like rows: no trigger
    assert setup.receiver.seen == [], setup.receiver.seen

    spread = setup.reference.std(axis=0)
    stream.rows, stream.phase = (setup.reference + 3 * spread).astype(np.float32), "drifted"  # every feature +3 sd
    _wait(lambda: setup.receiver.seen, 60, "the retraining webhook")
    first_delivery = time.monotonic()
    skipped = _wait(
        lambda: (s := [e for e in _webhooks_log(setup.state) if e["outcome"] == "skipped"]) and len(s) >= 3 and s,
        60,
        "three more guardrail periods with a positive drift verdict",
    )
    drifted = _drift(setup)
    assert time.monotonic() - first_delivery >= 3 * PERIOD_SECONDS
    assert drifted["dataset_drift"] is True, drifted
    assert stream.failed == 0 and stream.sent > 0

    (request,) = setup.receiver.seen  # one drift episode, one delivery
    assert request["signed"], "the receiver could not verify the HMAC-SHA256 signature"
    assert request["path"] == "/retrain" and request["event"] == "drift"
    body = request["body"]
    assert body["model"] == MODEL and body["live_version"] == 1 and body["trigger"] == "drift"
    evidence = body["evidence"]
    assert evidence["dataset_drift"] is True and evidence["rows"] >= 200
    # the window actually measured: from the recorded snapshot nearest to 4 s ago
    assert 0.5 * POLICY["window_seconds"] <= evidence["window_seconds"] <= 3 * POLICY["window_seconds"]
    assert len(evidence["drifted_features"]) >= FEATURES // 2
    for statistics in evidence["drifted_features"].values():
        assert statistics["score"] >= statistics["threshold"]

    log = _webhooks_log(setup.state)
    (ok,) = [e for e in log if e["outcome"] == "ok"]
    assert (ok["hook"], ok["event"], ok["attempts"]) == ("retrain", "drift", 1)
    assert all(e["detail"].startswith("already delivered") for e in skipped)
    assert {e["dedup_key"] for e in log} == {f"{MODEL}:v1:drift"}


def test_the_report_route_serves_the_page_with_the_most_drifted_captured_rows(setup: Setup) -> None:
    assert setup.stream.phase == "drifted"  # the stream still flows, drifted (after the test above)
    unauthenticated = requests.get(f"{setup.controller.url}/v1/models/{MODEL}/drift/report", timeout=30)
    assert unauthenticated.status_code == 401

    def page() -> requests.Response | None:  # spool files close after 10 s, the controller compacts every 30 s
        answer = setup.controller.api("GET", f"/v1/models/{MODEL}/drift/report", setup.viewer,
                                      params={"window": "30s", "rows": 5})  # fmt: skip
        assert answer.status_code == 200, answer.text
        return answer if 'class="drifted-row"' in answer.text else None

    answer = _wait(page, 90, "captured rows in the drift report")
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert f"<title>Drift report: {MODEL} version 1</title>" in html
    assert '<div class="verdict drift" id="verdict">Dataset drift:' in html
    charts = re.findall(r'<svg class="chart" data-feature="([^"]+)"', html)
    features = [f"f{i:02d}" for i in range(FEATURES)]  # sensor_frame's column names
    assert sorted(charts) == sorted([*features, PREDICTION]), charts  # one chart per feature, and the class mix
    ids = re.findall(r'<tr class="drifted-row" data-request-id="([^"]+)"', html)
    assert 1 <= len(ids) <= 5 and all(i.startswith("drifted-") for i in ids), ids


def test_drift_report_in_remote_mode_writes_the_controllers_page(setup: Setup, tmp_path: Path) -> None:
    page = tmp_path / "drift.html"
    output = setup.controller.cli("drift", MODEL, "--window", "30s", "--report", str(page), token=setup.viewer)
    assert f"drift report written to {page}" in output
    html = page.read_text(encoding="utf-8")
    assert '<div class="verdict drift" id="verdict">' in html
    assert 'class="drifted-row"' in html  # the captured rows live with the controller, not with this client
