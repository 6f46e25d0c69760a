"""End to end, a fleet found through DNS: three real tritonservers on 127.0.0.2, .3 and .4 (same ports, as pods of
one headless Service), a real dnsmasq answering ``triton.fleet.test`` with the addresses of those that are "in the
Service", and the real ``tritonops`` CLI with ``TRITONOPS_FLEET=dns:triton.fleet.test:PORT``.

A server whose address is added to the answers is brought to the desired state by the next reconcile; one whose
address is removed leaves the fleet without failing anything (and keeps serving what it had: nothing is unloaded).

The tests of this module run in order on one fleet; each leaves the state the next one starts from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from examples.train import train_numeric_pipeline
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.loadtest.dnsmasq import Dnsmasq
from tritonops.serving.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer, free_port, port_is_free

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "rf"
NAME = "triton.fleet.test"
ADDRESSES = {"A": "127.0.0.2", "B": "127.0.0.3", "C": "127.0.0.4"}
TRITONOPS = str(Path(sys.executable).parent / "tritonops")


@dataclass
class Pods:
    dns: Dnsmasq
    servers: dict[str, TritonServer]
    grpc_port: int
    env: dict[str, str]
    state: Path
    timings: dict[str, float] = field(default_factory=dict)

    def endpoint(self, name: str) -> str:
        return f"{ADDRESSES[name]}:{self.grpc_port}"

    def in_service(self, *names: str) -> None:
        """The headless Service's ready pods are now ``names``: DNS answers with their addresses only."""
        self.dns.answer({NAME: [ADDRESSES[n] for n in names]})

    def cli(self, *args: str, expect: int = 0) -> str:
        done = subprocess.run([TRITONOPS, *args], env=self.env, capture_output=True, text=True, timeout=240)
        output = done.stdout + done.stderr
        assert done.returncode == expect, f"tritonops {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def ready_versions(self, name: str) -> list[int]:
        client = grpcclient.InferenceServerClient(self.endpoint(name))
        try:
            return [v for v in (1, 2) if client.is_model_ready(MODEL, str(v))]
        finally:
            client.close()


def _shared_ports() -> tuple[int, int, int]:
    """Three ports free on every address: each pod listens on the same ports, as in a Service."""
    while True:
        ports = (free_port(), free_port(), free_port())
        if len(set(ports)) == 3 and all(port_is_free(p, a) for p in ports for a in ADDRESSES.values()):
            return ports


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    root = tmp_path_factory.mktemp("many_pods")
    repository = root / "repository"
    options = ConversionOptions(
        serving=ServingOptions(instance_count=1, preferred_batch_sizes=(16,), max_batch_size=64),
        parity_rows=200,
        native_export=False,
    )
    for seed in (0, 1):
        trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=seed)
        convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repository, options=options)
    http, grpc, metrics = _shared_ports()
    servers: dict[str, TritonServer] = {}
    with Dnsmasq(root / "dns") as dns:
        try:
            for name, address in ADDRESSES.items():
                server_options = ServerOptions(
                    model_repository=repository,
                    work_dir=root / name,
                    host=address,
                    http_port=http,
                    grpc_port=grpc,
                    metrics_port=metrics,
                )
                servers[name] = TritonServer(server_options).start()
            env = {
                **os.environ,
                "TRITONOPS_REPOSITORY": str(repository),
                "TRITONOPS_STATE": str(root / "state.db"),
                "TRITONOPS_FLEET": f"dns:{NAME}:{grpc}",
                "TRITONOPS_DNS_SERVER": f"{dns.address[0]}:{dns.address[1]}",
                "TRITONOPS_ACTOR": "e2e",
                "COLUMNS": "300",
            }
            for variable in ("TRITONOPS_ADMIN_TOKEN", "TRITONOPS_ADMIN_TOKEN_FILE"):
                env.pop(variable, None)
            built = Pods(dns, servers, grpc, env, root / "state.db")
            yield built
            print("\n[many pods] timings:", {k: round(v, 2) for k, v in built.timings.items()})
        finally:
            for server in servers.values():
                server.stop()


def test_the_fleet_is_whatever_dns_answers(pods: Pods) -> None:
    pods.in_service("A", "B")
    assert pods.cli("fleet", "list").split() == [pods.endpoint("A"), pods.endpoint("B")]
    refused = pods.cli("fleet", "add", pods.endpoint("C"), expect=4)
    assert f"the fleet is discovered from dns:{NAME}:{pods.grpc_port}" in refused


def test_promote_reaches_every_server_dns_names(pods: Pods) -> None:
    output = pods.cli("promote", MODEL, "1", "--reason", "first release")
    assert "live None -> 1 on 2 endpoint(s)" in output
    assert (pods.ready_versions("A"), pods.ready_versions("B"), pods.ready_versions("C")) == ([1], [1], [])


def test_a_server_that_appears_is_brought_to_the_desired_state_by_the_next_reconcile(pods: Pods) -> None:
    pods.in_service("A", "B", "C")
    started = time.monotonic()
    output = pods.cli("reconcile")
    pods.timings["reconcile with a new server"] = time.monotonic() - started
    assert f"{pods.endpoint('C')}: 1 drift" in output and "in sync" in output
    assert f"{pods.endpoint('A')}: 0 drift, 0 actions" in output
    assert pods.ready_versions("C") == [1]
    with StateStore.open(pods.state) as store:
        assert store.fleet() == []  # discovery does not write the static list
        detail = store.audit()[-1].detail
    assert all(pods.endpoint(n) in detail for n in ("A", "B", "C"))


def test_a_server_that_disappears_leaves_the_fleet_without_failing_anything(pods: Pods) -> None:
    pods.in_service("A", "C")
    output = pods.cli("reconcile")
    assert pods.endpoint("B") not in output and "in sync" in output
    status = pods.cli("status")
    assert pods.endpoint("A") in status and pods.endpoint("C") in status and pods.endpoint("B") not in status
    assert "live 1 -> 2 on 2 endpoint(s)" in pods.cli("promote", MODEL, "2")
    assert (pods.ready_versions("A"), pods.ready_versions("C")) == ([2], [2])
    assert pods.ready_versions("B") == [1]  # out of the Service: left alone, not unloaded
