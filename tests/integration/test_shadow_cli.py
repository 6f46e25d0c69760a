"""``tritonops shadow start|report|stop`` and the promote gate on shadow agreement, through the real CLI on the
real tritonserver, locally and in remote mode through the real controller API (uvicorn on a free port); the
traffic is raw HTTP (no SDK)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as grpcclient
import uvicorn
from sklearn.linear_model import LogisticRegression

from tests.cli_json import check_json_output
from tritonops.contract.names import PARAM_SHADOW
from tritonops.control_plane.controller import ApiContext, create_app
from tritonops.control_plane.metrics import FleetSampler
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import Role, create_token
from tritonops.converters import ConversionOptions, convert_sklearn
from tritonops.errors import ExitCode
from tritonops.loadtest.rollout import tritonops
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer, free_port
from tritonops.settings import Settings

pytestmark = pytest.mark.integration

MODEL = "sh_cli"
FEATURES = 4
RNG = np.random.default_rng(23)


@pytest.fixture(scope="module")
def env(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    x = RNG.normal(0.0, 1.0, (400, FEATURES)).astype(np.float32)
    options = ConversionOptions(
        serving=ServingOptions(drift_flush_seconds=0.1, max_queue_delay_microseconds=100, instance_count=1),
        parity_rows=200,
    )
    for rule in ((x[:, 0] > 0), (x[:, 0] - x[:, 2] > 0.2)):
        convert_sklearn(
            LogisticRegression(max_iter=300).fit(x, rule.astype(int)),
            x,
            name=MODEL,
            repository=triton_repository,
            options=options,
        )
    state = tmp_path_factory.mktemp("shadow_cli") / "state.db"
    environment = {
        **os.environ,
        "TRITONOPS_REPOSITORY": str(triton_repository),
        "TRITONOPS_STATE": str(state),
        "TRITONOPS_METRICS_URLS": triton_server.metrics_url,
        "TRITONOPS_ACTOR": "shadow-test",
    }
    environment.pop("TRITONOPS_ADMIN_TOKEN", None)
    environment.pop("TRITONOPS_ADMIN_TOKEN_FILE", None)
    for args in (["fleet", "add", triton_server.grpc_url], ["promote", MODEL, "1"]):
        step = tritonops(args, environment)
        assert step.exit_code == 0, step.output
    yield environment
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as admin:
        admin.unload_model(MODEL)


def run(env: dict[str, str], *args: str, expect: int = 0) -> str:
    step = tritonops(list(args), env)
    assert step.exit_code == expect, step.output
    return str(step.output)


def send(server: TritonServer, rows: np.ndarray) -> None:
    session = requests.Session()
    for row in rows:
        body = {"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": row.tolist()}]}
        answer = session.post(f"http://{server.http_url}/v2/models/{MODEL}/infer", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        assert outputs["served_version"] == [1]  # callers only ever get live's answer


def report(env: dict[str, str], rows: int) -> dict[str, Any]:
    """The CLI's JSON report (its documented schema) once the backend flushed ``rows`` compared rows."""
    for _ in range(100):
        view = check_json_output("shadow report", run(env, "shadow", "report", MODEL, "--json"))
        assert view["model"] == MODEL
        (found,) = view["reports"]
        if found["compared_rows"] >= rows:
            return dict(found)
        time.sleep(0.1)
    raise AssertionError(f"the shadow compared {found['compared_rows']} rows, expected {rows}")


def test_shadow_report_gate_and_stop(env: dict[str, str], triton_server: TritonServer, triton_repository: Path) -> None:
    out = run(env, "shadow", "start", MODEL, "2", "--share", "1.0", "--reason", "compare v2")
    assert "shadow 2 scores 1 of live 1's rows" in out
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        config = client.get_model_config(MODEL, as_json=True)["config"]
    assert json.loads(config["parameters"][PARAM_SHADOW]["string_value"])["version"] == 2

    rows = RNG.normal(0.0, 1.0, (400, FEATURES)).astype(np.float32)
    send(triton_server, rows)
    # a reload that only changes live's config is not smoke-checked again, so the shadow saw exactly these rows
    found = report(env, len(rows))
    sessions = [
        ort.InferenceSession(str(triton_repository / MODEL / str(v) / "model.onnx"), providers=["CPUExecutionProvider"])
        for v in (1, 2)
    ]
    labels = [np.asarray(s.run(["label"], {"input": rows})[0]).reshape(-1) for s in sessions]
    agreed = int(np.count_nonzero(labels[0] == labels[1]))
    assert 0 < agreed < len(rows)
    n = len(rows)
    assert (found["mirrored_rows"], found["compared_rows"], found["dropped_rows"]) == (n, n, 0)
    assert found["agreed_rows"] == agreed and found["agreement"] == pytest.approx(agreed / n)
    assert found["errors"] == {"unavailable": 0, "rejected": 0, "model_error": 0, "bad_output": 0}
    table = run(env, "shadow", "report", MODEL)
    assert "label agreement" in table and f"{agreed / n:.4g}" in table

    too_high = f"{agreed / n + 0.001:.4f}"
    refused = run(env, "promote", MODEL, "2", "--min-shadow-agreement", too_high, expect=ExitCode.CONTROL_PLANE)
    assert "shadow agreement gate refused it" in refused and f"{agreed / n:.4f} of {n} rows" in refused

    run(env, "shadow", "stop", MODEL, "--reason", "done")
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        config = client.get_model_config(MODEL, as_json=True)["config"]
    assert PARAM_SHADOW not in config.get("parameters", {})
    with StateStore.open(Path(env["TRITONOPS_STATE"])) as store:
        state = store.model(MODEL)
        assert state is not None and (state.shadow, state.shadow_share) == (None, 0.0)
        actions = [(e.action, e.result) for e in store.audit(MODEL)]
    assert ("shadow", "ok") in actions and ("stop-shadow", "ok") in actions
    assert ("promote", "refused") in actions


@pytest.fixture(scope="module")
def controller_url(env: dict[str, str], triton_server: TritonServer) -> Iterator[tuple[str, dict[str, str]]]:
    """The controller's API on the same state and fleet (uvicorn in a thread) and a token per role."""
    settings = Settings(Path(env["TRITONOPS_REPOSITORY"]), Path(env["TRITONOPS_STATE"]), None)
    with StateStore.open(settings.state_path) as store:
        tokens = {role.value: create_token(store, f"{role.value}-shadow", role, actor="test")[0] for role in Role}
    sampler = FleetSampler(lambda: [triton_server.metrics_url], None, max_age=0.0)
    port = free_port()
    config = uvicorn.Config(
        create_app(ApiContext(settings, window=sampler.window)), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", tokens
    finally:
        server.should_exit = True
        thread.join(10)


def test_shadow_through_the_controller(
    env: dict[str, str], controller_url: tuple[str, dict[str, str]], triton_server: TritonServer
) -> None:
    """Remote mode: no state, no repository, no metrics URLs; the controller starts, reports and stops the shadow,
    its answers print the same views (same JSON schema, same numbers as the local report) and the audit log names
    the token."""
    url, tokens = controller_url
    remote = {k: v for k, v in env.items() if not k.startswith("TRITONOPS_")}
    remote.update(TRITONOPS_URL=url, TRITONOPS_TOKEN=tokens["operator"], TRITONOPS_STATE="/nonexistent/state.db")
    viewer = {**remote, "TRITONOPS_TOKEN": tokens["viewer"]}
    refused = run(viewer, "shadow", "start", MODEL, "2", expect=ExitCode.ACCESS)
    assert "may not shadow" in refused
    assert "--actor: not taken" in run(remote, "shadow", "stop", MODEL, "--actor", "x", expect=ExitCode.CONFIGURATION)
    started = check_json_output(
        "shadow start | shadow stop", run(remote, "shadow", "start", MODEL, "2", "--share", "1", "--json")
    )
    assert started["action"] == "shadow" and started["model"] == MODEL and started["to_version"] == 2

    # the counters count since the live model last loaded: the first test's rows may still be in them
    before = check_json_output("shadow report", run(viewer, "shadow", "report", MODEL, "--json"))["reports"]
    base = (
        {k: before[0][k] for k in ("mirrored_rows", "compared_rows")}
        if before
        else dict.fromkeys(("mirrored_rows", "compared_rows"), 0.0)
    )
    rows = RNG.normal(0.0, 1.0, (200, FEATURES)).astype(np.float32)
    send(triton_server, rows)
    found = report(viewer, int(base["compared_rows"]) + len(rows))
    assert (found["live_version"], found["shadow_version"]) == ("1", "2")
    assert found["mirrored_rows"] - base["mirrored_rows"] == len(rows) == found["compared_rows"] - base["compared_rows"]
    assert found["dropped_rows"] == 0
    local = check_json_output("shadow report", run(env, "shadow", "report", MODEL, "--json"))
    assert local["reports"] == [found]  # the same view either way
    table = run(viewer, "shadow", "report", MODEL)
    assert "rows compared" in table and f"{found['compared_rows']:.0f}" in table

    stopped = check_json_output(
        "shadow start | shadow stop", run(remote, "shadow", "stop", MODEL, "--reason", "seen", "--json")
    )
    assert stopped["action"] == "stop-shadow"
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        config = client.get_model_config(MODEL, as_json=True)["config"]
    assert PARAM_SHADOW not in config.get("parameters", {})
    with StateStore.open(Path(env["TRITONOPS_STATE"])) as store:
        events = [(e.actor, e.action, e.result) for e in store.audit(MODEL)]
    assert ("operator-shadow", "shadow", "ok") in events and ("operator-shadow", "stop-shadow", "ok") in events
    assert ("viewer-shadow", "shadow", "refused") in events
