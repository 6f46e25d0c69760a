"""End to end, two controller replicas on one real PostgreSQL in front of two real tritonservers under load.

Both replicas serve the API; one holds the lease and runs the reconciler and guardrails. Through the follower:
promote 1, promote 2, canary 3 at 30%, while the load generator posts to both servers the whole time. Then the
leader is SIGKILLed: the follower takes over (the time is printed), the canary stays as it was, no inference
request fails, the audit log has every event in order (both leaderships included), and a rollback afterwards works.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import tritonclient.grpc as grpcclient

from examples.train import train_numeric_pipeline
from tritonops.contract.manifest import load_manifest
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.loadtest.postgres import PostgresCluster
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer, free_port
from tritonops.settings import StateLocation

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "rf"
TTL = 3.0
TRITONOPS = str(Path(sys.executable).parent / "tritonops")
TOKEN = "tops_" + secrets.token_hex(21)


class Load:
    """One thread per server posting unversioned inference requests; every failure is kept."""

    def __init__(self, urls: list[str], body: dict[str, object]) -> None:
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(u, body), daemon=True) for u in urls]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, body: dict[str, object]) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(f"http://{url}/v2/models/{MODEL}/infer", json=body, timeout=10)
                if response.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.005)
        session.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@dataclass
class HA:
    location: StateLocation
    env: dict[str, str]
    servers: list[TritonServer]
    root: Path
    body: dict[str, object]
    controllers: dict[str, tuple[subprocess.Popen[bytes], int]] = field(default_factory=dict)
    load: Load | None = None

    def start_controller(self, name: str) -> None:
        port = free_port()
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [TRITONOPS, "controller", "start", "--port", str(port), "--replica", name, "--lease-ttl", str(TTL),
             "--reconcile-every", "5"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.controllers[name] = (process, port)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url(name) + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert process.poll() is None, (self.root / f"{name}.log").read_text()
            assert time.monotonic() < deadline, f"controller {name} did not answer"
            time.sleep(0.2)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.controllers[name][1]}"

    def leadership(self, name: str) -> dict[str, Any]:
        body = requests.get(self.url(name) + "/readyz", timeout=5).json()
        leadership: dict[str, Any] = body["leadership"]
        return leadership

    def wait_leader(self, asked: str, expected: str, timeout: float) -> float:
        started = time.monotonic()
        while True:
            try:
                if self.leadership(asked)["leader"] == expected:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            assert time.monotonic() - started < timeout, f"{expected} never led: {self.leadership(asked)}"
            time.sleep(0.1)

    def post(self, name: str, path: str, body: dict[str, object]) -> dict[str, Any]:
        response = requests.post(
            f"{self.url(name)}/v1{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=240
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def cli(self, *args: str) -> str:
        done = subprocess.run([TRITONOPS, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HA]:
    root = tmp_path_factory.mktemp("controller_ha")
    repository = root / "repository"
    options = ConversionOptions(
        serving=ServingOptions(instance_count=1, preferred_batch_sizes=(16,), max_batch_size=64),
        parity_rows=200,
        native_export=False,
    )
    for seed in (0, 1, 2):
        trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=seed)
        convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repository, options=options)
    manifest = load_manifest(repository / MODEL / "1")
    row = [
        float(manifest.reference.sample[f.name][0] or 0.0) for f in sorted(manifest.features, key=lambda f: f.column)
    ]
    body = {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    with PostgresCluster() as cluster:
        location = cluster.new_database()
        servers = [TritonServer(ServerOptions(model_repository=repository, work_dir=root / n)).start() for n in "ab"]
        env = {
            **os.environ,
            "TRITONOPS_STATE": str(location),
            "TRITONOPS_STATE_PASSWORD": str(location.password),
            "TRITONOPS_REPOSITORY": str(repository),
            "TRITONOPS_BOOTSTRAP_TOKEN": TOKEN,
            "TRITONOPS_ACTOR": "e2e",
        }
        for variable in ("TRITONOPS_ADMIN_TOKEN", "TRITONOPS_ADMIN_TOKEN_FILE", "TRITONOPS_FLEET"):
            env.pop(variable, None)
        built = HA(location, env, servers, root, body)
        try:
            for server in servers:
                built.cli("fleet", "add", server.grpc_url)
            yield built
        finally:
            if built.load is not None:
                built.load.stop()
            for process, _ in built.controllers.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
            for server in servers:
                server.stop()


def _audit(ha: HA) -> list[tuple[int, str, str, str, int | None]]:
    with StateStore.open(ha.location) as store:
        return [(e.id, e.actor, e.action, e.result, e.to_version) for e in store.audit()]


def _serving(server: TritonServer) -> tuple[list[int], bool]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        return [v for v in (1, 2, 3) if client.is_model_ready(MODEL, str(v))], bool(
            client.is_model_ready(f"{MODEL}__canary")
        )
    finally:
        client.close()


def test_one_of_two_replicas_leads_and_both_say_which(ha: HA) -> None:
    ha.start_controller("ctl-a")
    ha.wait_leader("ctl-a", "ctl-a", timeout=30)
    ha.start_controller("ctl-b")
    for name in ("ctl-a", "ctl-b"):
        assert ha.leadership(name)["leader"] == "ctl-a"
    assert ha.leadership("ctl-a")["this_replica_leads"] and not ha.leadership("ctl-b")["this_replica_leads"]
    assert "leader ctl-a (epoch 1)" in ha.cli("controller", "status")


def test_rollouts_through_the_follower_while_the_other_leads(ha: HA) -> None:
    assert ha.post("ctl-b", f"/models/{MODEL}/promote", {"version": 1, "reason": "first"})["to_version"] == 1
    ha.load = Load([s.http_url for s in ha.servers], ha.body)
    time.sleep(1.0)
    ha.post("ctl-b", f"/models/{MODEL}/promote", {"version": 2, "reason": "second"})
    ha.post("ctl-b", f"/models/{MODEL}/canary", {"version": 3, "weight": 0.3, "reason": "try 3"})
    for server in ha.servers:
        assert _serving(server) == ([2], True)
    assert ha.leadership("ctl-b")["leader"] == "ctl-a"


def test_the_leader_sigkilled_mid_canary_is_replaced_and_nothing_is_lost(ha: HA) -> None:
    before = _audit(ha)
    process, _ = ha.controllers["ctl-a"]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    takeover = ha.wait_leader("ctl-b", "ctl-b", timeout=TTL * 3 + 5)
    print(f"\n[controller HA] takeover after SIGKILL of the leader: {takeover:.2f} s (lease ttl {TTL} s)")
    assert takeover < 10.0
    assert ha.leadership("ctl-b")["this_replica_leads"]
    time.sleep(2.0)  # the new leader's first reconcile
    with StateStore.open(ha.location) as store:
        state = store.model(MODEL)
    assert state is not None and (state.live, state.canary, state.canary_weight) == (2, 3, 0.3)  # canary kept
    for server in ha.servers:
        assert _serving(server) == ([2], True)
    after = _audit(ha)
    assert after[: len(before)] == before  # nothing lost or rewritten
    assert [e[0] for e in after] == sorted(e[0] for e in after)
    leaders = [(actor, action) for _, actor, action, _, _ in after if action == "leader"]
    assert leaders == [("ctl-a", "leader"), ("ctl-b", "leader")]
    actions = [(action, result, to) for _, _, action, result, to in after if action in ("promote", "canary")]
    assert actions == [
        ("promote", "started", 1), ("promote", "ok", 1), ("promote", "started", 2), ("promote", "ok", 2),
        ("canary", "started", 3), ("canary", "ok", 3),
    ]  # fmt: skip
    assert "leader ctl-b (epoch 2)" in ha.cli("controller", "status")


def test_a_rollback_after_the_takeover_works_and_no_request_failed(ha: HA) -> None:
    result = ha.post("ctl-b", f"/models/{MODEL}/rollback", {"reason": "back to 1"})
    assert result["to_version"] == 1
    for server in ha.servers:
        assert _serving(server) == ([1], False)
    assert ha.load is not None
    ha.load.stop()
    print(f"[controller HA] inference under load: {ha.load.ok} ok, {len(ha.load.failures)} failed")
    assert ha.load.failures == [] and ha.load.ok > 100
