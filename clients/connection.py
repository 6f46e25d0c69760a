"""How the SDK connects: TLS / mutual TLS, gRPC channel arguments, and the servers behind one address.

``TlsOptions`` names PEM files: the CA that signed the server's certificate (default: the system's), and for mutual
TLS the client's certificate chain and key; ``server_name`` is the name the server's certificate must carry when it
differs from the host dialled (an address out of DNS, an ingress with a shared certificate).

``GrpcChannelOptions`` are the channel arguments that matter through load balancers and ingresses: keepalive pings
(so an idle connection a proxy dropped is noticed) and the message size limit.

An address is ``host:port`` (one server) or ``dns://[DNS_SERVER:PORT]/NAME:PORT`` (gRPC's naming): every A/AAAA
record of NAME is a server, asked again every ``resolve_interval`` seconds (the system resolver, or the DNS server
named in the authority part through dnspython).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonops.errors import ConfigurationError

# tritonclient's own defaults (tritonclient.grpc.KeepAliveOptions, MAX_GRPC_MESSAGE_SIZE)
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class TlsOptions:
    """TLS to the server (``ca_file``), mutual TLS (``cert_file`` + ``key_file``), the name to verify."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigurationError("TlsOptions: mutual TLS needs both cert_file and key_file, got only one")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigurationError(f"TlsOptions.{name}: {path} is not a readable file")

    def _read(self, path: Path | None) -> bytes | None:
        return Path(path).read_bytes() if path is not None else None

    def grpc_credentials(self) -> Any:
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self._read(self.ca_file),
            private_key=self._read(self.key_file),
            certificate_chain=self._read(self.cert_file),
        )

    def ssl_context(self, context: ssl.SSLContext | None = None) -> ssl.SSLContext:
        """A client context verifying the server (and presenting our certificate for mutual TLS)."""
        context = context or ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context


@dataclass(frozen=True)
class GrpcChannelOptions:
    """gRPC channel arguments; ``extra`` adds any other ``(name, value)`` pair gRPC knows."""

    keepalive_time_ms: int = _INT32_MAX
    keepalive_timeout_ms: int = 20_000
    keepalive_permit_without_calls: bool = False
    max_message_bytes: int = _INT32_MAX
    extra: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("keepalive_time_ms", "keepalive_timeout_ms", "max_message_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _INT32_MAX:
                raise ConfigurationError(
                    f"GrpcChannelOptions.{name}: expected an int in 1..{_INT32_MAX}, got {value!r}"
                )

    def channel_args(self, tls: TlsOptions | None) -> list[tuple[str, Any]]:
        args: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if tls is not None and tls.server_name:
            args.append(("grpc.ssl_target_name_override", tls.server_name))
        return [*args, *self.extra]


@dataclass(frozen=True)
class Target:
    """What an address names: one ``host:port``, or every record of a DNS name (optionally via a given server)."""

    host: str
    port: int
    dns: bool = False
    nameserver: tuple[str, int] | None = None

    @classmethod
    def parse(cls, url: str) -> Target:
        text = url.strip()
        if text.startswith("dns:"):
            rest = text[len("dns:") :]
            nameserver = None
            if rest.startswith("//"):
                authority, _, rest = rest[2:].partition("/")
                if authority:
                    nameserver = _host_port(authority, url, "the DNS server")
            host, port = _host_port(rest.lstrip("/"), url, "the name")
            return cls(host, port, dns=True, nameserver=nameserver)
        if "://" in text:
            raise ConfigurationError(
                f"url {url!r}: expected host:port or dns://[DNS_SERVER:PORT]/NAME:PORT (no scheme: TLS is "
                "ClientOptions.tls)"
            )
        host, port = _host_port(text, url, "the server")
        return cls(host, port)

    def resolve(self, timeout: float = 5.0) -> list[str]:
        """The ``host:port`` of every server the target names now, sorted."""
        if not self.dns:
            return [_join(self.host, self.port)]
        if self.nameserver is None:
            try:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            except socket.gaierror:
                return []
            return sorted({_join(str(info[4][0]), self.port) for info in infos})
        import dns.exception
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.nameserver[0]]
        resolver.port = self.nameserver[1]
        resolver.lifetime = timeout
        found: set[str] = set()
        for record_type in ("A", "AAAA"):
            try:
                found.update(_join(r.to_text(), self.port) for r in resolver.resolve(self.host, record_type))
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise OSError(f"DNS lookup of {self.host} through {_join(*self.nameserver)} failed: {exc}") from exc
        return sorted(found)


def _host_port(text: str, url: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"url {url!r}: {what} must be host:port, got {text!r}")
    return host, int(port)


def _join(host: str, port: int) -> str:
    try:
        bracket = ipaddress.ip_address(host).version == 6
    except ValueError:
        bracket = False
    return f"[{host}]:{port}" if bracket else f"{host}:{port}"
