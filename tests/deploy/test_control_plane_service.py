"""The controller service of docker-compose.yml / deploy/k8s, run for real the way the image runs it
(``tritonops controller start``, secrets from files, the state on its own path): it answers /healthz and /readyz,
the bootstrap token from the secret file is an admin on the API, a model the server lost comes back by the
controller alone, /metrics exports on the same port, SIGTERM stops it cleanly, and it starts again on the same
state."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import tritonclient.grpc as grpcclient

from tests.deploy.conftest import MODEL, DemoStack, answers
from tritonops.control_plane.state import StateStore
from tritonops.serving.triton import free_port

pytestmark = pytest.mark.integration

TRITONOPS = str(Path(sys.executable).parent / "tritonops")


def _start(demo_stack: DemoStack, port: int, bootstrap_file: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITONOPS_")}
    env.update(  # as docker-compose.yml and deploy/k8s/control-plane.yaml set them (the key files, the state)
        TRITONOPS_STATE=str(demo_stack.settings.state_path),
        TRITONOPS_REPOSITORY=str(demo_stack.settings.repository),
        TRITONOPS_BOOTSTRAP_TOKEN_FILE=str(bootstrap_file),
        TRITONOPS_METRICS_URLS=demo_stack.server.metrics_url,  # random test ports: metrics is not gRPC + 1
    )
    command = [TRITONOPS, "controller", "start", "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not answers(url):
        assert process.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, f"{url} never answered 200:\n" + log.read_text(errors="replace")[-2000:]
        time.sleep(0.3)


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)  # what `docker stop` and a pod's termination send
    return process.wait(30)


def test_the_controller_service_serves_repairs_exports_and_restarts(demo_stack: DemoStack, tmp_path: Path) -> None:
    bootstrap_file = tmp_path / "bootstrap_token"
    bootstrap = "tops_" + secrets.token_urlsafe(32)
    bootstrap_file.write_text(bootstrap + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "controller.log"
    process = _start(demo_stack, port, bootstrap_file, log)
    client = grpcclient.InferenceServerClient(demo_stack.server.grpc_url)
    admin = {"Authorization": f"Bearer {bootstrap}"}
    try:
        _wait(f"{url}/healthz", process, log)
        _wait(f"{url}/readyz", process, log)
        assert requests.get(f"{url}/v1/fleet", timeout=10).status_code == 401  # no token
        who = requests.get(f"{url}/v1/whoami", headers=admin, timeout=10).json()
        assert who == {"name": "bootstrap", "role": "admin"}
        fleet = requests.get(f"{url}/v1/fleet", headers=admin, timeout=10).json()
        assert fleet["endpoints"] == [demo_stack.server.grpc_url]

        deadline = time.monotonic() + 30
        while f'tritonops_live_version{{model="{MODEL}"}} 1.0' not in requests.get(f"{url}/metrics", timeout=5).text:
            assert time.monotonic() < deadline, "/metrics never reported the live version"
            time.sleep(0.5)

        # The server loses the model (as after a restart): the controller loads it again by itself.
        client.unload_model(MODEL)
        lost = time.monotonic()
        while not client.is_model_ready(MODEL, "1"):
            assert time.monotonic() - lost < 30, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
    finally:
        client.close()
        code = _stop(process)
    assert code == 0, log.read_text(errors="replace")[-2000:]
    assert bootstrap not in log.read_text(errors="replace")
    with StateStore.open(demo_stack.settings.state) as store:
        assert store.fleet() == [demo_stack.server.grpc_url]
        assert [t.name for t in store.tokens()].count("bootstrap") == 1

    # Started again on the same state: ready, the stored bootstrap token still works, not added twice.
    again_port = free_port()
    process = _start(demo_stack, again_port, bootstrap_file, tmp_path / "again.log")
    try:
        _wait(f"http://127.0.0.1:{again_port}/readyz", process, tmp_path / "again.log")
        who = requests.get(f"http://127.0.0.1:{again_port}/v1/whoami", headers=admin, timeout=10).json()
        assert who["name"] == "bootstrap"
    finally:
        assert _stop(process) == 0
    with StateStore.open(demo_stack.settings.state) as store:
        assert [t.name for t in store.tokens()].count("bootstrap") == 1
