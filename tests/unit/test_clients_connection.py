"""SDK connection options (addresses, TLS files, gRPC channel arguments) and the round-robin pool's rotation.

The pool is driven here with transports of our own interface that fail on demand (the real servers, a real DNS
server and a real SIGKILL are in tests/e2e/test_many_pods.py); the DNS names are answered by a real dnsmasq.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from tritonclient.utils import InferenceServerException

from tritonops.clients.connection import GrpcChannelOptions, Target, TlsOptions
from tritonops.clients.pool import PooledTransport
from tritonops.clients.transport import Answer, Route
from tritonops.contract.encoding import Tensor
from tritonops.errors import ConfigurationError
from tritonops.loadtest.dnsmasq import Dnsmasq

NAME = "pods.sdk.test"


def test_addresses_are_host_port_or_dns_names() -> None:
    assert Target.parse("10.0.0.5:8001") == Target("10.0.0.5", 8001)
    assert Target.parse("[::1]:8001") == Target("::1", 8001)
    assert Target.parse("dns:///triton.ns.svc:8001") == Target("triton.ns.svc", 8001, dns=True)
    assert Target.parse("dns://127.0.0.1:5353/triton.test:8001") == Target(
        "triton.test", 8001, dns=True, nameserver=("127.0.0.1", 5353)
    )
    assert Target.parse("127.0.0.1:8001").resolve() == ["127.0.0.1:8001"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://triton:8001", r"no scheme: TLS is ClientOptions.tls"),
        ("triton", r"the server must be host:port, got 'triton'"),
        ("dns:///triton", r"the name must be host:port"),
        ("dns://nameserver/triton:8001", r"the DNS server must be host:port, got 'nameserver'"),
    ],
)
def test_bad_addresses_are_named(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Target.parse(url)


def test_tls_options_check_their_files(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    with pytest.raises(ConfigurationError, match=r"mutual TLS needs both cert_file and key_file"):
        TlsOptions(ca_file=pem, cert_file=pem)
    with pytest.raises(ConfigurationError, match=r"TlsOptions.ca_file: .*missing.pem is not a readable file"):
        TlsOptions(ca_file=tmp_path / "missing.pem")


def test_grpc_channel_arguments() -> None:
    args = dict(GrpcChannelOptions(keepalive_time_ms=10_000, max_message_bytes=1 << 20, extra=(("grpc.x", 1),))
                .channel_args(TlsOptions(server_name="triton.test")))  # fmt: skip
    assert args["grpc.keepalive_time_ms"] == 10_000
    assert args["grpc.max_receive_message_length"] == args["grpc.max_send_message_length"] == 1 << 20
    assert args["grpc.ssl_target_name_override"] == "triton.test"
    assert args["grpc.x"] == 1
    with pytest.raises(ConfigurationError, match=r"GrpcChannelOptions.keepalive_time_ms: expected an int in 1\.\."):
        GrpcChannelOptions(keepalive_time_ms=0)


class _Server:
    """A transport of our own interface that answers, or fails as a vanished pod does."""

    def __init__(self, address: str, down: set[str], calls: list[str]) -> None:
        self.url, self._down, self._calls = address, down, calls
        self.closed = False

    def infer(
        self, model: str, tensors: Sequence[Tensor], request_id: str, timeout: float, route: Route = None
    ) -> Answer:
        self._calls.append(self.url)
        if self.url in self._down:
            raise InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")
        return Answer({}, "1")

    def model_config(self, model: str, timeout: float) -> Mapping[str, Any]:
        if self.url in self._down:
            raise InferenceServerException("bad request", status="StatusCode.INVALID_ARGUMENT")
        return {}

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with Dnsmasq(tmp_path_factory.mktemp("dnsmasq")) as server:
        yield server


def test_the_pool_rotates_drops_a_failed_server_and_follows_the_name(dnsmasq: Dnsmasq) -> None:
    dnsmasq.answer({NAME: ["127.0.0.2", "127.0.0.3"]})
    down: set[str] = set()
    calls: list[str] = []
    made: dict[str, _Server] = {}

    def make(address: str) -> _Server:
        made[address] = _Server(address, down, calls)
        return made[address]

    target = Target(NAME, 8001, dns=True, nameserver=dnsmasq.address)
    pool = PooledTransport(target, make, resolve_interval=3600)
    for _ in range(4):
        pool.infer("rf", [], "", 1.0)
    assert calls == ["127.0.0.2:8001", "127.0.0.3:8001"] * 2  # round robin
    down.add("127.0.0.3:8001")
    calls.clear()
    for _ in range(4):
        pool.infer("rf", [], "", 1.0)  # never fails: the request goes on to the other server
    assert calls == ["127.0.0.2:8001", "127.0.0.3:8001", "127.0.0.2:8001", "127.0.0.2:8001", "127.0.0.2:8001"]
    assert pool.served == {"127.0.0.2:8001": 6, "127.0.0.3:8001": 2}
    down.add("127.0.0.2:8001")
    with pytest.raises(InferenceServerException, match="failed to connect"):  # every server failed
        pool.infer("rf", [], "", 1.0)
    with pytest.raises(InferenceServerException, match="bad request"):  # not retryable: not sent elsewhere
        pool.model_config("rf", 1.0)
    down.clear()
    dnsmasq.answer({NAME: ["127.0.0.3", "127.0.0.4"]})
    pool._rotation.resolved_at = float("-inf")
    assert pool.addresses() == ["127.0.0.3:8001", "127.0.0.4:8001"]
    assert not made["127.0.0.2:8001"].closed  # retired, closed on the next lookup (requests may be in flight)
    pool._rotation.resolved_at = float("-inf")
    pool.addresses()
    assert made["127.0.0.2:8001"].closed
    pool.close()
    assert all(server.closed for server in made.values())
