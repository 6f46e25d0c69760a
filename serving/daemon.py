"""A detached ``tritonserver`` recorded in a pid file, so ``tritonops server stop|status`` can find it later."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from tritonops.serving.errors import ServingError
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
            raise ServingError(f"pid file {path} has unexpected fields: {exc}") from exc


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


def server_status(pid_file: Path = DEFAULT_PID_FILE) -> ServerStatus:
    """Is the recorded server's process alive, and does it answer ``/v2/health/ready``?"""
    record = ServerRecord.read(pid_file)
    alive = process_alive(record.pid)
    ready = False
    if alive:
        url = f"http://{record.host}:{record.http_port}/v2/health/ready"
        with contextlib.suppress(requests.RequestException):
            ready = requests.get(url, timeout=2.0).status_code == 200
    return ServerStatus(record=record, alive=alive, ready=ready)


def stop_recorded_server(pid_file: Path = DEFAULT_PID_FILE, grace: float = 30.0) -> ServerRecord:
    """SIGTERM the recorded server's process group, SIGKILL after ``grace`` seconds, remove the pid file."""
    record = ServerRecord.read(pid_file)
    if process_alive(record.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process_alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(record.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return record
