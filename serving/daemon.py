"""A detached ``tritonserver`` recorded in a pid file, so ``tritonops server stop|status`` can find it later.

The record holds the server's identity (pid, process start time, executable): ``stop`` signals only a process that
still matches it, so a pid reused after the server died (or after a reboot) is never signalled. A record whose
server is gone is stale: ``stop`` reports it, ends what the dead server left running and removes the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from tritonops.serving.errors import ServingError
from tritonops.serving.processes import ProcessIdentity, end_leftovers
from tritonops.settings import DEFAULT_PID_FILE


@dataclass(frozen=True)
class ServerRecord:
    """What ``server start --detach`` leaves behind in the pid file."""

    pid: int
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    repository: str
    log_path: str
    started_at: float
    create_time: float
    """The server process's start time (``psutil``), part of its identity."""
    exe: str
    """The server's executable, part of its identity."""
    work_dir: str
    """The launcher's work directory (run directories, backend stub copies)."""

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.create_time, self.exe)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> ServerRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ServingError(f"no detached server recorded at {path} (start one with --detach)") from exc
        except (json.JSONDecodeError, OSError) as exc:
            raise ServingError(f"pid file {path} is unreadable: {exc}") from exc
        try:
            return cls(**data)
        except TypeError as exc:
            raise ServingError(
                f"pid file {path} has unexpected fields ({exc}); if no server is running, remove it"
            ) from exc


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class ServerStatus:
    record: ServerRecord
    alive: bool
    ready: bool
    stale: str | None = None
    """Why the record no longer names a running server (None: it does)."""


def server_status(pid_file: Path = DEFAULT_PID_FILE) -> ServerStatus:
    """Is the recorded server's process alive (and still the one started), and does it answer ``/v2/health/ready``?"""
    record = ServerRecord.read(pid_file)
    stale = record.identity.describe()
    alive = stale is None
    ready = False
    if alive:
        url = f"http://{record.host}:{record.http_port}/v2/health/ready"
        with contextlib.suppress(requests.RequestException):
            ready = requests.get(url, timeout=2.0).status_code == 200
    return ServerStatus(record=record, alive=alive, ready=ready, stale=stale)


@dataclass(frozen=True)
class StopResult:
    """What ``stop_recorded_server`` did."""

    record: ServerRecord
    stale: str | None = None
    """Set when the pid file named no running server of ours (nothing was signalled): why."""
    leftovers: list[int] = field(default_factory=list)
    """Pids of processes the server left behind (backend stubs) that were ended."""


def stop_recorded_server(pid_file: Path = DEFAULT_PID_FILE, grace: float = 30.0) -> StopResult:
    """SIGTERM the recorded server's process group, SIGKILL after ``grace`` seconds, remove the pid file.

    Only a process whose start time and executable match the record is signalled; a stale record is removed and
    reported in the result, and what the dead server left running in its work directory is ended.
    """
    record = ServerRecord.read(pid_file)
    stale = record.identity.describe()
    if stale is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while record.identity.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if record.identity.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
            while record.identity.alive():
                time.sleep(0.05)
    leftovers = end_leftovers(Path(record.work_dir))
    pid_file.unlink(missing_ok=True)
    return StopResult(record, stale, leftovers)
