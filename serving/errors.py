"""Errors raised while finding, starting and talking to ``tritonserver``.

ServingError
 ├── BinaryNotFoundError       no tritonserver binary where we looked
 ├── PortInUseError            a requested port is taken
 ├── RepositoryNotFoundError   the model repository does not exist
 ├── ServerStartError          the server exited or never became ready
 ├── ServerNotReadyError       the recorded (detached) server is not running or not ready
 └── AllocatorNotFoundError    tcmalloc was asked for and is not installed

``ModelConfigError`` (a model config can't be built or parsed, a ``tritonops.*`` parameter is bad) belongs to
the contract (``tritonops.contract.errors``) and is re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from tritonops.contract.errors import ModelConfigError
from tritonops.errors import ExitCode, TritonOpsError

__all__ = [
    "AllocatorNotFoundError",
    "BinaryNotFoundError",
    "ModelConfigError",
    "PortInUseError",
    "RepositoryNotFoundError",
    "ServerNotReadyError",
    "ServerStartError",
    "ServingError",
]


class ServingError(TritonOpsError):
    """Something about the Triton server or its configuration went wrong."""

    exit_code = ExitCode.SERVING


class BinaryNotFoundError(ServingError):
    def __init__(self, searched: list[str]) -> None:
        self.searched = searched
        places = "; ".join(searched)
        super().__init__(
            f"tritonserver binary not found (looked in: {places}). Install the embedded server with "
            "`pip install 'tritonops[server]'` (the nvidia-pytriton wheel), or point TRITONSERVER_BIN at a "
            "tritonserver executable."
        )


class PortInUseError(ServingError):
    def __init__(self, port: int, purpose: str) -> None:
        self.port = port
        self.purpose = purpose
        super().__init__(
            f"{purpose} port {port} is already in use on this host: stop whatever listens there or choose "
            f"another port (--{purpose.lower()}-port)"
        )


class RepositoryNotFoundError(ServingError):
    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"model repository {path} does not exist or is not a directory")


class ServerStartError(ServingError):
    def __init__(self, reason: str, log_tail: str = "", log_path: Path | None = None) -> None:
        self.reason = reason
        self.log_tail = log_tail
        self.log_path = log_path
        message = f"tritonserver failed to start: {reason}"
        if log_tail:
            message += f"\n--- last lines of the server log ({log_path}) ---\n{log_tail}"
        super().__init__(message)


class ServerNotReadyError(ServingError):
    def __init__(self, pid: int, running: bool) -> None:
        self.pid = pid
        self.running = running
        state = "running but not ready" if running else "not running"
        super().__init__(f"tritonserver pid {pid} is {state}")


class AllocatorNotFoundError(ServingError):
    def __init__(self, libraries: list[str], searched: list[str]) -> None:
        self.libraries = libraries
        self.searched = searched
        super().__init__(
            f"allocator tcmalloc: none of {', '.join(libraries)} in {', '.join(searched)}. Install it with "
            "`apt-get install libtcmalloc-minimal4` (or `make setup`), or run with --allocator system"
        )
