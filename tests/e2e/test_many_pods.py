"""End to end, a fleet found through DNS: three real tritonservers on 127.0.0.2, .3 and .4 (same ports, as pods of
one headless Service), a real dnsmasq answering ``triton.fleet.test`` with the addresses of those that are "in the
Service", and the real ``tritonops`` CLI with ``TRITONOPS_FLEET=dns:triton.fleet.test:PORT``.

A server whose address is added to the answers is brought to the desired state by the next reconcile; one whose
address is removed leaves the fleet without failing anything (and keeps serving what it had: nothing is unloaded).

The SDK on the same fleet: one client given ``dns://DNS_SERVER/triton.fleet.test:PORT`` spreads its requests round
robin over every server the name lists (the share per server is read from each Triton's own statistics and
printed), and a server SIGKILLed under load costs no failed prediction. Then TLS: nginx terminates TLS (with client
certificates) in front of one Triton's HTTP and gRPC ports, and the SDK talks to it with TlsOptions and gRPC
channel options.

The tests of this module run in order on one fleet; each leaves the state the next one starts from.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import tritonclient.grpc as grpcclient

from examples.train import train_numeric_pipeline
from tritonops.clients import (
    AsyncTritonClient,
    ClientError,
    ClientOptions,
    GrpcChannelOptions,
    RetryPolicy,
    TlsOptions,
    TritonClient,
)
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.errors import ExitCode
from tritonops.loadtest.dnsmasq import Dnsmasq
from tritonops.loadtest.gateway import TlsGateway, make_certificates
from tritonops.model_config import ServingOptions
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
    http_port: int
    grpc_port: int
    env: dict[str, str]
    state: Path
    rows: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    def dns_url(self, port: int) -> str:
        return f"dns://{self.dns.address[0]}:{self.dns.address[1]}/{NAME}:{port}"

    def inferences(self, name: str) -> int:
        """Requests the live model answered on server ``name`` so far (Triton's own count)."""
        client = grpcclient.InferenceServerClient(self.endpoint(name))
        try:
            stats = client.get_inference_statistics(MODEL, as_json=True)
        finally:
            client.close()
        return sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats.get("model_stats", []))

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
    frames = []
    for seed in (0, 1):
        trained = train_numeric_pipeline(n_rows=300, n_features=8, seed=seed)
        convert_sklearn(trained.model, trained.frame, name=MODEL, repository=repository, options=options)
        frames.append(trained.frame)
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
            built = Pods(dns, servers, http, grpc, env, root / "state.db", frames[0].head(50))
            yield built
            print("\n[many pods] timings:", {k: round(v, 2) for k, v in built.timings.items()})
        finally:
            for server in servers.values():
                server.stop()


def test_the_fleet_is_whatever_dns_answers(pods: Pods) -> None:
    pods.in_service("A", "B")
    assert pods.cli("fleet", "list").split() == [pods.endpoint("A"), pods.endpoint("B")]
    refused = pods.cli("fleet", "add", pods.endpoint("C"), expect=ExitCode.CONTROL_PLANE)
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
    assert f"{pods.endpoint('C')}: 1 diverged" in output and "in sync" in output
    assert f"{pods.endpoint('A')}: 0 diverged, 0 actions" in output
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


# -- the SDK across pods -------------------------------------------------------------------------------------
def _shares(pods: Pods, before: dict[str, int]) -> dict[str, int]:
    return {name: pods.inferences(name) - before[name] for name in before}


def test_one_client_spreads_its_requests_over_every_server_the_name_lists(pods: Pods) -> None:
    pods.in_service("A", "C")
    for protocol, port in (("grpc", pods.grpc_port), ("http", pods.http_port)):
        before = {name: pods.inferences(name) for name in ADDRESSES}
        with TritonClient(pods.dns_url(port), MODEL, protocol=protocol) as client:  # type: ignore[arg-type]
            for i in range(100):
                assert client.predict(pods.rows.iloc[[i % len(pods.rows)]]).version == "2"
        counts = _shares(pods, before)
        print(f"\n[many pods] {protocol} share per server over 100 predictions: {counts}")
        assert counts["B"] == 0  # not in the answers
        assert counts["A"] + counts["C"] == 100
        assert 40 <= counts["A"] <= 60, counts  # round robin: every other request

    async def spread() -> None:
        async with AsyncTritonClient(pods.dns_url(pods.grpc_port), MODEL) as client:
            await asyncio.gather(*(client.predict(pods.rows.iloc[[i]]) for i in range(40)))

    before = {name: pods.inferences(name) for name in ADDRESSES}
    asyncio.run(spread())
    counts = _shares(pods, before)
    print(f"[many pods] async grpc share per server over 40 predictions: {counts}")
    assert counts["A"] + counts["C"] == 40 and 14 <= counts["A"] <= 26, counts


# -- TLS through an ingress -----------------------------------------------------------------------------
GATEWAY_NAME = "triton.gateway.test"


@pytest.fixture(scope="module")
def gateway(pods: Pods, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsGateway]:
    directory = tmp_path_factory.mktemp("gateway")
    certificates = make_certificates(directory / "certs", GATEWAY_NAME)
    upstream_http = f"{ADDRESSES['A']}:{pods.http_port}"
    with TlsGateway(directory, certificates, http_upstream=upstream_http, grpc_upstream=pods.endpoint("A")) as nginx:
        yield nginx


def _tls(gateway: TlsGateway, **changes: object) -> TlsOptions:
    c = gateway.certificates
    fields: dict[str, object] = {
        "ca_file": c.ca, "cert_file": c.client_cert, "key_file": c.client_key, "server_name": GATEWAY_NAME,
    }  # fmt: skip
    fields.update(changes)
    return TlsOptions(**fields)  # type: ignore[arg-type]


def test_grpc_and_http_through_a_tls_gateway_with_client_certificates(pods: Pods, gateway: TlsGateway) -> None:
    with TritonClient(pods.endpoint("A"), MODEL) as direct:
        expected = direct.predict(pods.rows).labels.tolist()
    channel = GrpcChannelOptions(keepalive_time_ms=10_000, keepalive_timeout_ms=5_000, max_message_bytes=8 << 20)
    options = ClientOptions(tls=_tls(gateway), grpc=channel)
    for protocol, address in (("grpc", gateway.grpcs_address), ("http", gateway.https_address)):
        with TritonClient(address, MODEL, protocol=protocol, options=options) as client:  # type: ignore[arg-type]
            prediction = client.predict(pods.rows)
        assert prediction.labels.tolist() == expected and prediction.version == "2", protocol

    async def through_tls() -> list[object]:
        async with AsyncTritonClient(gateway.grpcs_address, MODEL, options=options) as client:
            return list((await client.predict(pods.rows)).labels.tolist())

    assert asyncio.run(through_tls()) == expected


@pytest.mark.parametrize(
    ("change", "protocol"),
    [
        ({"cert_file": None, "key_file": None}, "grpc"),  # the gateway demands a client certificate
        ({"cert_file": None, "key_file": None}, "http"),
        ({"server_name": "someone-else.test"}, "grpc"),  # the certificate does not name the server we expect
        ({"server_name": "someone-else.test"}, "http"),
        ({"ca_file": None}, "grpc"),  # a CA we do not trust signed it
    ],
)
def test_the_tls_gateway_refuses_what_it_must(
    pods: Pods, gateway: TlsGateway, change: dict[str, object], protocol: str
) -> None:
    options = ClientOptions(tls=_tls(gateway, **change), deadline=5.0, retry=RetryPolicy(max_attempts=1))
    address = gateway.grpcs_address if protocol == "grpc" else gateway.https_address
    with (
        TritonClient(address, MODEL, protocol=protocol, options=options) as client,  # type: ignore[arg-type]
        pytest.raises(ClientError),
    ):
        client.predict(pods.rows.head(1))


def test_a_server_that_goes_away_under_load_costs_no_failed_prediction(pods: Pods) -> None:
    """C is SIGKILLed while DNS still lists it (as between a pod's death and its endpoint's removal)."""
    pods.in_service("A", "C")
    failures: list[str] = []
    answered = 0
    stop = threading.Event()
    options = ClientOptions(resolve_interval=1.0, deadline=10.0)
    client = TritonClient(pods.dns_url(pods.grpc_port), MODEL, options=options)

    def load() -> None:
        nonlocal answered
        i = 0
        while not stop.is_set():
            try:
                client.predict(pods.rows.iloc[[i % len(pods.rows)]])
                answered += 1
            except ClientError as exc:
                failures.append(str(exc))
            i += 1

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        time.sleep(2.0)
        before_kill = answered
        victim = pods.servers["C"]
        assert victim.process is not None
        os.killpg(victim.process.pid, signal.SIGKILL)
        time.sleep(3.0)  # DNS still lists C: the client drops it on its first failure and goes on with A
        pods.in_service("A")  # the endpoint controller removes it
        time.sleep(2.0)
    finally:
        stop.set()
        worker.join(30)
        client.close()
        pods.servers["C"].stop()
    print(f"\n[many pods] predictions: {answered} answered ({before_kill} before the kill), {len(failures)} failed")
    assert failures == []
    assert answered - before_kill > 20
