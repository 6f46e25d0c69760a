"""Fleet sources: TRITONOPS_FLEET parsing, DNS names answered by a real dnsmasq, EndpointSlices read by the real
Kubernetes client.

No Kubernetes API server can run here, so the EndpointSlice listing is served by a small local HTTP server that
answers the one request the client makes (a fake of the API server: it checks the path and label selector the real
client sends and returns an EndpointSliceList document). What that leaves uncovered: the in-cluster service-account
login (token and CA mounted into the pod) and RBAC; deploy/k8s grants the `list` verb the listing needs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from tritonops.control_plane import rollout
from tritonops.control_plane.discovery import discover, endpoint_of, endpoints_from_slices, endpointslice_endpoints
from tritonops.control_plane.errors import DiscoveryError, FleetError
from tritonops.control_plane.state import StateStore
from tritonops.errors import ConfigurationError
from tritonops.loadtest.dnsmasq import Dnsmasq
from tritonops.serving.triton import free_port
from tritonops.settings import FleetSource, Settings, load_settings, parse_fleet_source

NAME = "triton.fleet.test"


# -- TRITONOPS_FLEET --------------------------------------------------------------------------------------
def test_fleet_sources_are_parsed_from_the_environment() -> None:
    assert load_settings({}).fleet == FleetSource()
    dns = load_settings({"TRITONOPS_FLEET": "dns:triton.ns.svc.cluster.local:8001", "TRITONOPS_DNS_SERVER": "[::1]:53"})
    assert dns.fleet == FleetSource("dns", "triton.ns.svc.cluster.local", "8001", nameserver=("::1", 53))
    assert str(dns.fleet) == "dns:triton.ns.svc.cluster.local:8001"
    slices = parse_fleet_source("endpointslice:tritonops/triton:grpc")
    assert slices == FleetSource("endpointslice", "triton", "grpc", "tritonops")
    assert str(slices) == "endpointslice:tritonops/triton:grpc"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dns:triton", r"expected dns:NAME:PORT"),
        ("dns:triton:http", r"expected dns:NAME:PORT"),
        ("dns:triton:70000", r"expected dns:NAME:PORT"),
        ("endpointslice:triton:grpc", r"expected endpointslice:NAMESPACE/SERVICE:PORT"),
        ("consul:triton", r"TRITONOPS_FLEET=consul:triton: expected static, dns:NAME:PORT or endpointslice"),
    ],
)
def test_a_malformed_fleet_source_is_named(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_fleet_source(value)


def test_a_malformed_dns_server_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"TRITONOPS_DNS_SERVER=10.0.0.1: expected HOST:PORT"):
        parse_fleet_source("dns:triton.test:8001", "10.0.0.1")


def test_ipv6_endpoints_are_bracketed() -> None:
    assert endpoint_of("::2", 8001) == "[::2]:8001"
    assert endpoint_of("127.0.0.2", "8001") == "127.0.0.2:8001"
    assert endpoint_of("triton-0.triton.ns.svc", 8001) == "triton-0.triton.ns.svc:8001"


# -- DNS, answered by a real dnsmasq -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with Dnsmasq(tmp_path_factory.mktemp("dnsmasq")) as server:
        yield server


def test_a_dns_name_is_every_a_and_aaaa_record_and_is_asked_again_each_time(dnsmasq: Dnsmasq, tmp_path: Path) -> None:
    source = FleetSource("dns", NAME, "8001", nameserver=dnsmasq.address)
    with StateStore.open(tmp_path / "state.db") as store:
        dnsmasq.answer({NAME: ["127.0.0.3", "127.0.0.2", "::2"]})
        assert discover(source, store) == ["127.0.0.2:8001", "127.0.0.3:8001", "[::2]:8001"]
        dnsmasq.answer({NAME: ["127.0.0.3"]})
        assert discover(source, store) == ["127.0.0.3:8001"]
        dnsmasq.answer({})
        assert discover(source, store) == []  # the name is gone (NXDOMAIN): an empty fleet, not an error
        assert store.fleet() == []  # discovery never writes the static list


def test_a_dns_server_that_does_not_answer_is_an_error_not_an_empty_fleet(tmp_path: Path) -> None:
    silent = FleetSource("dns", NAME, "8001", nameserver=("127.0.0.1", free_port()))  # nothing listens there
    with StateStore.open(tmp_path / "state.db") as store, pytest.raises(DiscoveryError) as info:
        discover(silent, store, timeout=1.0)
    assert f"fleet dns:{NAME}:8001: A lookup through 127.0.0.1:" in str(info.value)


def test_with_a_discovered_fleet_static_membership_changes_are_refused(dnsmasq: Dnsmasq, tmp_path: Path) -> None:
    source = FleetSource("dns", NAME, "8001", nameserver=dnsmasq.address)
    settings = Settings(repository=tmp_path / "repo", state_path=tmp_path / "state.db", admin_token=None, fleet=source)
    dnsmasq.answer({NAME: ["127.0.0.2"]})
    assert rollout.fleet_list(settings) == ["127.0.0.2:8001"]
    with pytest.raises(FleetError, match=rf"fleet add: the fleet is discovered from dns:{NAME}:8001"):
        rollout.fleet_add(settings, "127.0.0.9:8001", actor="alice")
    with pytest.raises(FleetError, match=r"fleet remove: the fleet is discovered"):
        rollout.fleet_remove(settings, "127.0.0.2:8001", actor="alice")


# -- EndpointSlices, read by the real Kubernetes client ------------------------------------------------------
def _slice(address_type: str, ports: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "triton-x", "labels": {"kubernetes.io/service-name": "triton"}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }


SLICES = [
    _slice(
        "IPv4",
        [{"name": "http", "port": 8000, "protocol": "TCP"}, {"name": "grpc", "port": 8001, "protocol": "TCP"}],
        [
            {"addresses": ["127.0.1.5"], "conditions": {"ready": True}},
            {"addresses": ["127.0.1.6"], "conditions": {"ready": False, "terminating": True}},
            {"addresses": ["127.0.1.7"]},  # no conditions: readiness unknown, counted as ready
        ],
    ),
    _slice("IPv6", [{"name": "grpc", "port": 8001}], [{"addresses": ["fd00::7"], "conditions": {"ready": True}}]),
    _slice("IPv4", [{"name": "metrics", "port": 8002}], [{"addresses": ["127.0.1.9"]}]),  # no gRPC port here
]


class _FakeApiServer(BaseHTTPRequestHandler):
    """Answers GET .../namespaces/<ns>/endpointslices?labelSelector=... as the API server would."""

    requests: list[str] = []  # noqa: RUF012 - one list per test run, read by the test
    status = 200

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = json.dumps(
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {}, "items": SLICES}
            if self.status == 200
            else {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[k8s.DiscoveryV1Api]:
    server = HTTPServer(("127.0.0.1", 0), _FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = k8s.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    api_client = k8s.ApiClient(config)
    try:
        yield k8s.DiscoveryV1Api(api_client)
    finally:
        api_client.close()
        server.shutdown()
        server.server_close()
        _FakeApiServer.requests.clear()
        _FakeApiServer.status = 200


def test_endpointslices_give_the_ready_addresses_on_the_named_port(api: k8s.DiscoveryV1Api) -> None:
    source = FleetSource("endpointslice", "triton", "grpc", "tritonops")
    assert endpointslice_endpoints(source, api=api) == ["127.0.1.5:8001", "127.0.1.7:8001", "[fd00::7]:8001"]
    (path,) = _FakeApiServer.requests
    url = urlsplit(path)
    assert url.path == "/apis/discovery.k8s.io/v1/namespaces/tritonops/endpointslices"
    assert parse_qs(url.query) == {"labelSelector": ["kubernetes.io/service-name=triton"]}
    by_number = FleetSource("endpointslice", "triton", "8002", "tritonops")
    assert endpointslice_endpoints(by_number, api=api) == ["127.0.1.9:8002"]


def test_an_endpointslice_listing_the_api_refuses_is_an_error(api: k8s.DiscoveryV1Api) -> None:
    _FakeApiServer.status = 403
    source = FleetSource("endpointslice", "triton", "grpc", "tritonops")
    with pytest.raises(DiscoveryError, match=r"fleet endpointslice:tritonops/triton:grpc: the Kubernetes API refused"):
        endpointslice_endpoints(source, api=api)


def test_an_unreachable_api_server_is_an_error() -> None:
    config = k8s.Configuration()
    config.host = f"http://127.0.0.1:{free_port()}"
    config.retries = 0
    with k8s.ApiClient(config) as api_client:
        source = FleetSource("endpointslice", "triton", "grpc", "tritonops")
        with pytest.raises(DiscoveryError, match=r"the Kubernetes API did not answer"):
            endpointslice_endpoints(source, api=k8s.DiscoveryV1Api(api_client), timeout=2.0)


def test_endpoints_from_client_objects() -> None:
    pieces = [
        k8s.V1EndpointSlice(
            address_type="IPv4",
            endpoints=[k8s.V1Endpoint(addresses=["127.0.1.1"], conditions=k8s.V1EndpointConditions(ready=True))],
            ports=[k8s.DiscoveryV1EndpointPort(name="grpc", port=9001)],
        ),
        k8s.V1EndpointSlice(address_type="IPv4", endpoints=None, ports=None),  # a slice with nothing yet
    ]
    assert endpoints_from_slices(pieces, "grpc") == ["127.0.1.1:9001"]
