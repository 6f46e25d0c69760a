"""The controller API's shadow routes (``/v1/models/{model}/shadow``) on the real tritonserver: FastAPI's TestClient
over a real SQLite state, the controller's own fleet sampler for the report, raw HTTP inference traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from tritonops.control_plane.controller import ApiContext, create_app
from tritonops.control_plane.metrics import FleetSampler
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.control_plane.tokens import Role, create_token
from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer
from tritonops.settings import Settings

pytestmark = pytest.mark.integration

MODEL = "sh_api"
FEATURES = 3
RNG = np.random.default_rng(31)


@pytest.fixture(scope="module")
def api(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str], Settings]]:
    x = RNG.normal(0.0, 1.0, (300, FEATURES)).astype(np.float32)
    options = ConversionOptions(
        serving=ServingOptions(drift_flush_seconds=0.1, max_queue_delay_microseconds=100, instance_count=1),
        parity_rows=200,
    )
    for rule in ((x[:, 0] > 0), (x[:, 1] > 0)):
        model = LogisticRegression(max_iter=300).fit(x, rule.astype(int))
        convert_sklearn(model, x, name=MODEL, repository=triton_repository, options=options)
    settings = Settings(triton_repository, tmp_path_factory.mktemp("shadow_api") / "state.db", None)
    with StateStore.open(settings.state_path) as store:
        store.add_endpoint(triton_server.grpc_url, AuditEntry("test", "fleet-add", None, None, None, "", "ok"))
        tokens = {role.value: create_token(store, f"{role.value}-person", role, actor="test")[0] for role in Role}
    sampler = FleetSampler(lambda: [triton_server.metrics_url], None, max_age=0.0)
    with TestClient(create_app(ApiContext(settings, window=sampler.window))) as client:
        yield client, tokens, settings
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as admin:
        admin.unload_model(MODEL)


def test_shadow_start_report_and_stop_over_the_api(
    api: tuple[TestClient, dict[str, str], Settings], triton_server: TritonServer
) -> None:
    client, tokens, settings = api
    operator = {"Authorization": f"Bearer {tokens['operator']}"}
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert client.post(f"/v1/models/{MODEL}/promote", json={"version": 1}, headers=operator).status_code == 200
    refused = client.post(f"/v1/models/{MODEL}/shadow", json={"version": 2}, headers=viewer)
    assert refused.status_code == 403
    bad = client.post(f"/v1/models/{MODEL}/shadow", json={"version": 2, "share": 1.5}, headers=operator)
    assert bad.status_code == 422 and "share" in bad.text  # the schema names the field
    started = client.post(f"/v1/models/{MODEL}/shadow", json={"version": 2, "reason": "compare"}, headers=operator)
    assert started.status_code == 200, started.text
    assert started.json()["action"] == "shadow"

    session = requests.Session()
    for row in RNG.normal(0.0, 1.0, (200, FEATURES)).astype(np.float32):
        body = {"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": row.tolist()}]}
        answer = session.post(f"http://{triton_server.http_url}/v2/models/{MODEL}/infer", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 20
    while True:
        (report,) = client.get(f"/v1/models/{MODEL}/shadow", headers=viewer).json()
        if report["compared_rows"] >= 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (report["live_version"], report["shadow_version"]) == ("1", "2")
    assert report["compared_rows"] == report["mirrored_rows"] >= 200  # the smoke sample is mirrored too
    assert 0 < report["agreed_rows"] < report["compared_rows"]  # two different rules
    assert report["agreement"] == pytest.approx(report["agreed_rows"] / report["compared_rows"])
    assert sum(report["errors"].values()) == 0 and report["dropped_rows"] == 0

    stopped = client.post(f"/v1/models/{MODEL}/shadow/stop", json={"reason": "done"}, headers=operator)
    assert stopped.status_code == 200, stopped.text
    with StateStore.open(settings.state_path) as store:
        state = store.model(MODEL)
        actors = {(e.actor, e.action) for e in store.audit(MODEL)}
    assert state is not None and state.shadow is None
    assert ("operator-person", "shadow") in actors and ("operator-person", "stop-shadow") in actors
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as admin:
        parameters = admin.get_model_config(MODEL, as_json=True)["config"].get("parameters", {})
    assert "tritonops.shadow" not in parameters  # the live model reloaded without the mirror
