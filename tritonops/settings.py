"""Settings shared by every part of tritonops, from ``TRITONOPS_*`` environment variables.

Secrets are read from ``TRITONOPS_<NAME>`` or from the file named by ``TRITONOPS_<NAME>_FILE``; they are never
accepted on a command line and never printed:

- ``ADMIN_TOKEN``: Triton's model-repository admin key (held by the controller or a local CLI only);
- ``BOOTSTRAP_TOKEN``: the controller's first admin API token, stored (hashed) at its first start;
- ``PROMETHEUS_TOKEN``: a bearer token for the Prometheus the controller reads its windows from (optional).

``TRITONOPS_FLEET`` says where the Triton servers are: ``static`` (the list kept in the state, ``tritonops fleet
add``), ``dns:NAME:PORT`` (every A/AAAA record of NAME, e.g. a Kubernetes headless Service; ``TRITONOPS_DNS_SERVER``
``HOST:PORT`` picks the DNS server) or ``endpointslice:NAMESPACE/SERVICE:PORT`` (the ready endpoints of a Service's
EndpointSlices; PORT is the port's name or number).

``TRITONOPS_STATE`` is a SQLite file path (the embedded default) or a ``postgresql://user@host:port/db`` URL; the
PostgreSQL password comes from ``TRITONOPS_STATE_PASSWORD`` or the file named by ``TRITONOPS_STATE_PASSWORD_FILE``
(or libpq's own ``PGPASSFILE``), never from the URL, so the URL can be shown in messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from tritonops.errors import ConfigurationError

ADMIN_HEADER = "admin-key"
"""The gRPC/HTTP header Triton's restricted model-repository API checks."""


_POSTGRESQL_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class StateLocation:
    """Where the control plane state lives: a SQLite file, or a PostgreSQL database (URL without password)."""

    path: Path | None = None
    url: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def engine(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if self.url is not None else "sqlite"

    def __str__(self) -> str:  # safe to print: the URL never holds the password
        return self.url if self.url is not None else str(self.path)


FleetKind = Literal["static", "dns", "endpointslice"]


@dataclass(frozen=True)
class FleetSource:
    """Where the Triton servers are listed: the state's static list, a DNS name, or a Service's EndpointSlices."""

    kind: FleetKind = "static"
    name: str = ""
    """dns: the name to resolve; endpointslice: the Service."""
    port: str = ""
    """dns: the gRPC port number; endpointslice: the port's name or number."""
    namespace: str = ""
    nameserver: tuple[str, int] | None = None
    """dns: the DNS server to ask (None: the system's resolver configuration)."""

    def __str__(self) -> str:
        if self.kind == "dns":
            return f"dns:{self.name}:{self.port}"
        if self.kind == "endpointslice":
            return f"endpointslice:{self.namespace}/{self.name}:{self.port}"
        return "static"


@dataclass(frozen=True)
class Settings:
    """Where things live and how to reach them.

    ``state_path`` is the SQLite file; when ``state_url`` is set the state lives in that PostgreSQL database
    instead. ``state`` says which, for ``StateStore.open``.
    """

    repository: Path
    state_path: Path
    admin_token: str | None
    state_url: str | None = None
    state_password: str | None = field(default=None, repr=False)
    bootstrap_token: str | None = field(default=None, repr=False)
    fleet: FleetSource = field(default_factory=FleetSource)
    webhooks_path: Path | None = None
    """``TRITONOPS_WEBHOOKS``: the YAML file of outbound webhooks (``tritonops.control_plane.webhooks``)."""
    capture_dir: Path = Path(".tritonops/capture")
    """``TRITONOPS_CAPTURE_DIR``: captured rows, ``spool/`` (written by Triton's backend) and ``rows/`` (Parquet)."""
    capture_max_bytes: int = 1 << 30
    """``TRITONOPS_CAPTURE_MAX_BYTES``: the Parquet rows kept at most; the oldest hours are deleted first."""

    @property
    def state(self) -> StateLocation:
        if self.state_url is not None:
            return StateLocation(url=self.state_url, password=self.state_password)
        return StateLocation(path=self.state_path)

    def admin_headers(self) -> dict[str, str]:
        """Headers to send with model-repository (admin) calls; empty when no token is set."""
        return {ADMIN_HEADER: self.admin_token} if self.admin_token else {}

    def __repr__(self) -> str:  # never leak the token through logs or tracebacks
        token = "set" if self.admin_token else "unset"
        bootstrap = "set" if self.bootstrap_token else "unset"
        return (
            f"Settings(repository={self.repository!s}, state={self.state!s}, admin_token={token}, "
            f"bootstrap_token={bootstrap})"
        )


def read_admin_token(env: dict[str, str] | None = None) -> str | None:
    """The admin token from ``TRITONOPS_ADMIN_TOKEN`` or ``TRITONOPS_ADMIN_TOKEN_FILE``, or None."""
    return _read_secret(dict(os.environ) if env is None else env, "TRITONOPS_ADMIN_TOKEN", "admin token")


def read_bootstrap_token(env: dict[str, str] | None = None) -> str | None:
    """The controller's first admin API token from ``TRITONOPS_BOOTSTRAP_TOKEN`` or ``..._FILE``, or None."""
    return _read_secret(dict(os.environ) if env is None else env, "TRITONOPS_BOOTSTRAP_TOKEN", "bootstrap token")


def read_prometheus_token(env: dict[str, str] | None = None) -> str | None:
    """The bearer token for Prometheus's query API from ``TRITONOPS_PROMETHEUS_TOKEN`` or ``..._FILE``, or None."""
    return _read_secret(dict(os.environ) if env is None else env, "TRITONOPS_PROMETHEUS_TOKEN", "Prometheus token")


def _read_secret(env: dict[str, str], name: str, what: str) -> str | None:
    """``env[name]``, or the content of the file named by ``env[name + '_FILE']``, or None."""
    value = env.get(name)
    if value:
        return value.strip()
    secret_file = env.get(f"{name}_FILE")
    if not secret_file:
        return None
    path = Path(secret_file)
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"{name}_FILE={path}: cannot read the {what} file ({exc.strerror})") from exc
    if not content:
        raise ConfigurationError(f"{name}_FILE={path}: the file is empty, expected a {what}")
    return content


DEFAULT_REPOSITORY = Path("model_repository")
DEFAULT_STATE_PATH = Path(".tritonops/state.db")
DEFAULT_PID_FILE = Path(".tritonops/server.json")
"""Where ``tritonops server start --detach`` records the server it started."""


def parse_state_url(value: str) -> str | None:
    """``value`` when it is a PostgreSQL URL (checked), None when it is a SQLite path."""
    parts = urlsplit(value)
    if parts.scheme not in _POSTGRESQL_SCHEMES:
        if "://" in value:
            raise ConfigurationError(
                f"TRITONOPS_STATE={value.split('://')[0]}://...: unknown scheme, expected a SQLite file path or "
                "postgresql://user@host:port/database"
            )
        return None
    if parts.password is not None:
        raise ConfigurationError(
            "TRITONOPS_STATE: the URL holds a password; put it in TRITONOPS_STATE_PASSWORD or in a file named "
            "by TRITONOPS_STATE_PASSWORD_FILE instead, so it never shows in messages"
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigurationError(
            f"TRITONOPS_STATE={value}: expected postgresql://user@host:port/database (host and database required)"
        )
    return value


def parse_fleet_source(value: str, dns_server: str | None = None) -> FleetSource:
    """``TRITONOPS_FLEET`` (and ``TRITONOPS_DNS_SERVER``) as a ``FleetSource``; a clear error when malformed."""
    value = value.strip()
    if value in ("", "static"):
        return FleetSource()
    kind, _, rest = value.partition(":")
    name, _, port = rest.rpartition(":")
    if kind == "dns":
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"TRITONOPS_FLEET={value}: expected dns:NAME:PORT, e.g. dns:triton.tritonops.svc.cluster.local:8001"
            )
        return FleetSource("dns", name, port, nameserver=_parse_dns_server(dns_server) if dns_server else None)
    if kind == "endpointslice":
        namespace, _, service = name.partition("/")
        if not namespace or not service or not port:
            raise ConfigurationError(
                f"TRITONOPS_FLEET={value}: expected endpointslice:NAMESPACE/SERVICE:PORT (PORT a name or number), "
                "e.g. endpointslice:tritonops/triton:grpc"
            )
        return FleetSource("endpointslice", service, port, namespace)
    raise ConfigurationError(
        f"TRITONOPS_FLEET={value}: expected static, dns:NAME:PORT or endpointslice:NAMESPACE/SERVICE:PORT"
    )


def _parse_dns_server(value: str) -> tuple[str, int]:
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"TRITONOPS_DNS_SERVER={value}: expected HOST:PORT of a DNS server, e.g. 10.96.0.10:53"
        )
    return host.strip("[]"), int(port)


def load_settings(
    env: dict[str, str] | None = None, *, repository: Path | None = None, state: str | None = None
) -> Settings:
    """Settings from the environment, with defaults relative to the working directory.

    ``repository`` and ``state`` (the CLI's ``--repository`` and ``--state``: a SQLite path or a PostgreSQL URL) win
    over ``TRITONOPS_REPOSITORY`` and ``TRITONOPS_STATE``, which win over ``./model_repository`` and
    ``./.tritonops/state.db``.
    """
    env = dict(os.environ) if env is None else env
    state = state or env.get("TRITONOPS_STATE") or str(DEFAULT_STATE_PATH)
    state_url = parse_state_url(state)
    return Settings(
        repository=repository or Path(env.get("TRITONOPS_REPOSITORY") or DEFAULT_REPOSITORY),
        state_path=DEFAULT_STATE_PATH if state_url else Path(state),
        admin_token=read_admin_token(env),
        state_url=state_url,
        bootstrap_token=read_bootstrap_token(env),
        state_password=_read_secret(env, "TRITONOPS_STATE_PASSWORD", "state database password") if state_url else None,
        fleet=parse_fleet_source(env.get("TRITONOPS_FLEET", ""), env.get("TRITONOPS_DNS_SERVER")),
        webhooks_path=Path(env["TRITONOPS_WEBHOOKS"]) if env.get("TRITONOPS_WEBHOOKS") else None,
        capture_dir=Path(env.get("TRITONOPS_CAPTURE_DIR", ".tritonops/capture")),
        capture_max_bytes=_positive_int(env, "TRITONOPS_CAPTURE_MAX_BYTES", 1 << 30),
    )


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise ConfigurationError(f"{name}: expected a whole number > 0, got {text!r}")
    return int(text)


def read_api_token(env: dict[str, str] | None = None) -> str | None:
    """A client's controller API token from ``TRITONOPS_TOKEN`` or the file named by ``TRITONOPS_TOKEN_FILE``."""
    env = dict(os.environ) if env is None else env
    token = env.get("TRITONOPS_TOKEN")
    if token:
        return token.strip()
    token_file = env.get("TRITONOPS_TOKEN_FILE")
    if not token_file:
        return None
    path = Path(token_file).expanduser()
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"TRITONOPS_TOKEN_FILE={path}: cannot read the API token file ({exc.strerror})"
        ) from exc
    if not content:
        raise ConfigurationError(f"TRITONOPS_TOKEN_FILE={path}: the file is empty, expected a token")
    return content


def controller_url(env: dict[str, str] | None = None) -> str | None:
    """``TRITONOPS_URL``: the controller's API for the CLI's remote mode (None: work on the local state)."""
    env = dict(os.environ) if env is None else env
    return env.get("TRITONOPS_URL", "").strip() or None
