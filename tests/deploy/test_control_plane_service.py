"""The control plane service of docker-compose.yml / deploy/k8s, run for real: its entrypoint script joins the
Triton endpoint to the fleet (once, however often it starts), reconciles it back to the desired state after the
model disappears from the server, and serves the exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import tritonclient.grpc as grpcclient

from tests.deploy.conftest import DEPLOY, MODEL, DemoStack
from tritonops.control_plane.state import StateStore
from tritonops.serving.triton import free_port

pytestmark = pytest.mark.integration

ENTRYPOINT = DEPLOY / "docker" / "control-plane-entrypoint.sh"


def _run_service(demo_stack: DemoStack, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # `tritonops` of this venv
        TRITONOPS_STATE=str(demo_stack.settings.state_path),
        TRITONOPS_REPOSITORY=str(demo_stack.settings.repository),
        TRITONOPS_ENDPOINTS=demo_stack.server.grpc_url,
        TRITONOPS_METRICS_URLS=demo_stack.server.metrics_url,  # random test ports: metrics is not gRPC + 1
        TRITONOPS_WATCH_MODEL=MODEL,
        TRITONOPS_RECONCILE_SECONDS="1",
        TRITONOPS_EXPORTER_PORT=str(port),
        TRITONOPS_WATCH_ARGS="--interval 1",
    )
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    with log.open("wb") as out:
        return subprocess.Popen(["/bin/sh", str(ENTRYPOINT)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, 15)  # the script's whole group: watch and the reconcile loop
    process.wait(15)


def test_service_joins_the_fleet_reconciles_and_exports(demo_stack: DemoStack, tmp_path: Path) -> None:
    client = grpcclient.InferenceServerClient(demo_stack.server.grpc_url)
    port = free_port()
    process = _run_service(demo_stack, port, tmp_path / "service.log")
    try:
        deadline = time.monotonic() + 30
        exported = ""
        while f'tritonops_live_version{{model="{MODEL}"}} 1.0' not in exported:
            assert process.poll() is None, (tmp_path / "service.log").read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the exporter never reported the live version"
            time.sleep(0.5)
            try:
                exported = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.RequestException:
                exported = ""  # not serving yet

        # The server loses the model (as after a restart): the reconcile loop loads it again by itself.
        client.unload_model(MODEL)
        assert not client.is_model_ready(MODEL)
        deadline = time.monotonic() + 30
        while not client.is_model_ready(MODEL, "1"):
            assert time.monotonic() < deadline, (tmp_path / "service.log").read_text(errors="replace")[-2000:]
            time.sleep(0.5)
    finally:
        _stop(process)
        client.close()
    with StateStore.open(demo_stack.settings.state) as store:
        assert store.fleet() == [demo_stack.server.grpc_url]  # already there: not added twice
        reconciles = [e for e in store.audit() if e.actor == "control-plane" and e.action == "reconcile"]
    assert any(json.loads(e.detail)["actions"] >= 1 for e in reconciles), "no reconcile that reloaded the model"

    # Started again, the script finds the endpoint in the fleet and does not fail on adding it twice.
    process = _run_service(demo_stack, free_port(), tmp_path / "again.log")
    try:
        time.sleep(3)
        assert process.poll() is None, (tmp_path / "again.log").read_text(errors="replace")[-2000:]
    finally:
        _stop(process)
