"""Alerts that reach someone, end to end: a version that fails a third of its requests makes the shipped
``TritonHighErrorRatio`` rule fire in a real Prometheus, a real Alertmanager routes it with the shipped route to the
controller's receiver (an operator token from a file), and the controller rolls the model back as its policy says,
with audit events naming the alert.

Two timings are shortened for the test and nothing else: the rule's ``for: 5m`` becomes ``for: 5s`` and the route's
group waits become 1 s (the expressions, labels, receiver, URL path and auth are the shipped files')."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import yaml
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.utils import InferenceServerException

from examples.data import sensor_frame
from tritonops.control_plane.guardrails import parse_policy_data
from tritonops.control_plane.policies import store_policy
from tritonops.control_plane.rollout import fleet_add, promote
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import Role, create_token
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer, free_port
from tritonops.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MODEL = "alertsensor"
POLICY = {
    "error_rate": None,  # the controller's own guardrails stay out of it: the alert must do the rollback
    "drift": None,
    "canary": None,
    "action": "alert",
    "alerts": {"TritonHighErrorRatio": "rollback"},
}


def _wait(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Stack:
    state: Path
    prometheus: str
    started: float


@pytest.fixture(scope="module")
def stack(
    triton_server: TritonServer, triton_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("alerts")
    data = sensor_frame(n_rows=400, n_features=4, seed=21)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
    tolerant = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("lr", LogisticRegression())])
    strict = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())])  # refuses NaN rows
    for model in (tolerant, strict):
        convert_sklearn(
            model.fit(data.frame, data.labels), data.frame, name=MODEL, repository=triton_repository, options=options
        )
    settings = Settings(repository=triton_repository, state_path=work / "state.db", admin_token=None)
    fleet_add(settings, triton_server.grpc_url, actor="test")
    promote(settings, MODEL, 1, actor="test", reason="good")
    promote(settings, MODEL, 2, actor="test", reason="the regression")
    with StateStore.open(settings.state) as store:
        store_policy(store, MODEL, parse_policy_data(POLICY), actor="test", repository=triton_repository)
        token, _ = create_token(store, "alertmanager", Role.OPERATOR, actor="test")
    secrets = work / "secrets"
    secrets.mkdir()
    (secrets / "tritonops_alertmanager_token").write_text(token)
    (secrets / "tritonops_alertmanager_token").chmod(0o600)

    processes: list[subprocess.Popen[bytes]] = []
    try:
        controller_port = free_port()
        env = {
            **os.environ,
            "TRITONOPS_STATE": str(settings.state_path),
            "TRITONOPS_REPOSITORY": str(triton_repository),
        }
        env.pop("TRITONOPS_ADMIN_TOKEN", None)
        processes.append(
            _start(
                [sys.executable, "-m", "tritonops", "controller", "start", "--port", str(controller_port)],
                work / "controller.log",
                env,
            )
        )
        _wait(lambda: _up(f"http://127.0.0.1:{controller_port}/healthz"), 90, "the controller")

        shipped = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
        shipped["route"].update(group_wait="1s", group_interval="1s")
        (hook,) = shipped["receivers"][0]["webhook_configs"]
        hook["url"] = hook["url"].replace("http://controller:8080", f"http://127.0.0.1:{controller_port}")
        auth = hook["http_config"]["authorization"]
        auth["credentials_file"] = str(secrets / Path(auth["credentials_file"]).name)
        (work / "alertmanager.yml").write_text(yaml.safe_dump(shipped))
        am_port = free_port()
        processes.append(
            _start(
                [
                    "/usr/bin/prometheus-alertmanager",
                    f"--config.file={work / 'alertmanager.yml'}",
                    f"--storage.path={work / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                work / "alertmanager.log",
            )
        )
        _wait(lambda: _up(f"http://127.0.0.1:{am_port}/-/ready"), 60, "alertmanager")

        rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "alerts.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "TritonHighErrorRatio":
                    rule["for"] = "5s"
        (work / "alerts.yml").write_text(yaml.safe_dump(rules))
        triton = triton_server.metrics_url.removeprefix("http://").removesuffix("/metrics")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "rule_files": [str(ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"), str(work / "alerts.yml")],
            "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [triton]}]}],
        }
        (work / "prometheus.yml").write_text(json.dumps(config))
        prom_port = free_port()
        processes.append(
            _start(
                [
                    "/usr/bin/prometheus",
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                work / "prometheus.log",
            )
        )
        _wait(lambda: _up(f"http://127.0.0.1:{prom_port}/-/ready"), 60, "prometheus")
        yield Stack(settings.state_path, f"http://127.0.0.1:{prom_port}", time.time())
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_error_rate_alert_reaches_the_controller_which_rolls_back(stack: Stack, triton_server: TritonServer) -> None:
    rows = sensor_frame(n_rows=300, n_features=4, seed=22).frame.to_numpy(dtype=np.float32)
    stop = threading.Event()
    counts = {"ok": 0, "refused": 0}

    def traffic() -> None:
        client = grpcclient.InferenceServerClient(triton_server.grpc_url)
        i = 0
        while not stop.is_set() and i < 40_000:  # bounded
            row = rows[i % len(rows)].copy()
            if i % 3 == 0:
                row[0] = np.nan
            tensor = grpcclient.InferInput("input", [1, row.size], "FP32")
            tensor.set_data_from_numpy(row.reshape(1, -1))
            try:
                client.infer(MODEL, [tensor])
                counts["ok"] += 1
            except InferenceServerException:
                counts["refused"] += 1
            i += 1
            time.sleep(0.004)
        client.close()

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:

        def firing() -> float | None:
            alerts = requests.get(f"{stack.prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            for alert in alerts:
                if alert["labels"].get("alertname") == "TritonHighErrorRatio" and alert["state"] == "firing":
                    return time.time()
            return None

        fired_seen = _wait(firing, 240, "TritonHighErrorRatio to fire in Prometheus")

        def rolled_back() -> Any:
            with StateStore.open(stack.state) as store:
                events = [e for e in store.audit(MODEL) if e.actor == "alertmanager"]
                live = store.model(MODEL)
            rollback = [e for e in events if e.action == "rollback" and e.result == "ok"]
            return (events, live) if rollback and live is not None and live.live == 1 else None

        events, live = _wait(rolled_back, 120, "the controller's rollback")
        handled = time.time()
    finally:
        stop.set()
        thread.join(15)
    received = [e for e in events if e.action == "alert-firing" and e.reason == "TritonHighErrorRatio"]
    assert received and received[0].model == MODEL
    (rollback,) = [e for e in events if e.action == "rollback" and e.result == "ok"]
    assert rollback.reason.startswith("alert TritonHighErrorRatio") and rollback.from_version == 2
    assert rollback.to_version == 1 and live.live == 1
    assert counts["refused"] > 0 and counts["ok"] > 0
    print(f"rule firing -> controller rollback done: {handled - fired_seen:.1f} s (polled every 0.5 s)")
