"""Settings shared by every part of tritonops, from ``TRITONOPS_*`` environment variables.

Secrets are read from ``TRITONOPS_<NAME>`` or from the file named by ``TRITONOPS_<NAME>_FILE``; they are never
accepted on a command line and never printed:

- ``ADMIN_TOKEN``: Triton's model-repository admin key (held by the controller or a local CLI only);
- ``BOOTSTRAP_TOKEN``: the controller's first admin API token, stored (hashed) at its first start.

``TRITONOPS_PROMETHEUS_URL`` (optional): a Prometheus that scrapes the fleet; guardrail windows then come from
PromQL instead of counter samples kept in the state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tritonops.errors import ConfigurationError

ADMIN_HEADER = "admin-key"
"""The gRPC/HTTP header Triton's restricted model-repository API checks."""


@dataclass(frozen=True)
class Settings:
    """Where things live and how to reach them."""

    repository: Path
    state_path: Path
    admin_token: str | None
    bootstrap_token: str | None = None
    prometheus_url: str | None = None

    def admin_headers(self) -> dict[str, str]:
        """Headers to send with model-repository (admin) calls; empty when no token is set."""
        return {ADMIN_HEADER: self.admin_token} if self.admin_token else {}

    def __repr__(self) -> str:  # never leak the token through logs or tracebacks
        token = "set" if self.admin_token else "unset"
        bootstrap = "set" if self.bootstrap_token else "unset"
        return (
            f"Settings(repository={self.repository!s}, state_path={self.state_path!s}, admin_token={token}, "
            f"bootstrap_token={bootstrap}, prometheus_url={self.prometheus_url})"
        )


def _read_secret(env: dict[str, str], variable: str, what: str) -> str | None:
    """``$variable``, else the content of the file named by ``$variable_FILE``, else None."""
    token = env.get(variable)
    if token:
        return token.strip()
    token_file = env.get(f"{variable}_FILE")
    if not token_file:
        return None
    path = Path(token_file)
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"{variable}_FILE={path}: cannot read the {what} file ({exc.strerror})") from exc
    if not content:
        raise ConfigurationError(f"{variable}_FILE={path}: the file is empty, expected a token")
    return content


def read_admin_token(env: dict[str, str] | None = None) -> str | None:
    """The admin token from ``TRITONOPS_ADMIN_TOKEN`` or ``TRITONOPS_ADMIN_TOKEN_FILE``, or None."""
    return _read_secret(dict(os.environ) if env is None else env, "TRITONOPS_ADMIN_TOKEN", "admin token")


def read_bootstrap_token(env: dict[str, str] | None = None) -> str | None:
    """The controller's first admin API token from ``TRITONOPS_BOOTSTRAP_TOKEN`` or ``..._FILE``, or None."""
    return _read_secret(dict(os.environ) if env is None else env, "TRITONOPS_BOOTSTRAP_TOKEN", "bootstrap token")


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment, with defaults relative to the working directory."""
    env = dict(os.environ) if env is None else env
    return Settings(
        repository=Path(env.get("TRITONOPS_REPOSITORY", "model_repository")),
        state_path=Path(env.get("TRITONOPS_STATE", ".tritonops/state.db")),
        admin_token=read_admin_token(env),
        bootstrap_token=read_bootstrap_token(env),
        prometheus_url=env.get("TRITONOPS_PROMETHEUS_URL") or None,
    )
