"""Settings shared by every part of tritonops, from ``TRITONOPS_*`` environment variables.

The admin token is read from ``TRITONOPS_ADMIN_TOKEN`` or from the file named by
``TRITONOPS_ADMIN_TOKEN_FILE``; it is never accepted on a command line and never printed.
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

    def admin_headers(self) -> dict[str, str]:
        """Headers to send with model-repository (admin) calls; empty when no token is set."""
        return {ADMIN_HEADER: self.admin_token} if self.admin_token else {}

    def __repr__(self) -> str:  # never leak the token through logs or tracebacks
        token = "set" if self.admin_token else "unset"
        return f"Settings(repository={self.repository!s}, state_path={self.state_path!s}, admin_token={token})"


def read_admin_token(env: dict[str, str] | None = None) -> str | None:
    """The admin token from ``TRITONOPS_ADMIN_TOKEN`` or ``TRITONOPS_ADMIN_TOKEN_FILE``, or None."""
    env = dict(os.environ) if env is None else env
    token = env.get("TRITONOPS_ADMIN_TOKEN")
    if token:
        return token.strip()
    token_file = env.get("TRITONOPS_ADMIN_TOKEN_FILE")
    if not token_file:
        return None
    path = Path(token_file)
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"TRITONOPS_ADMIN_TOKEN_FILE={path}: cannot read the admin token file ({exc.strerror})"
        ) from exc
    if not content:
        raise ConfigurationError(f"TRITONOPS_ADMIN_TOKEN_FILE={path}: the file is empty, expected a token")
    return content


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment, with defaults relative to the working directory."""
    env = dict(os.environ) if env is None else env
    return Settings(
        repository=Path(env.get("TRITONOPS_REPOSITORY", "model_repository")),
        state_path=Path(env.get("TRITONOPS_STATE", ".tritonops/state.db")),
        admin_token=read_admin_token(env),
    )


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
