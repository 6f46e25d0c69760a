"""The processes of one server start, found and ended as a unit.

Every start gets its own run directory ``<work>/run/<id>/`` holding the backend directory (with its own copy of the
Python backend stub) and ``launch.json``, the identity of the ``tritonserver`` started from it. A process belongs to
a run when its executable lies inside the run directory (the backend stubs) or it is the recorded server. A killed
server leaves its stubs behind, re-parented to init; the next start of the same work directory ends them
(``end_leftovers``) and removes the run directory, and no start ever writes over a file a running process executes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

RUN_DIR = "run"
LAUNCH_RECORD = "launch.json"

log = logging.getLogger("tritonops.serving")


@dataclass(frozen=True)
class ProcessIdentity:
    """A pid plus what makes it one process and not a later one with a reused pid: start time and executable."""

    pid: int
    create_time: float
    exe: str

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The identity of the running process ``pid`` (``psutil.Error`` when it is gone or unreadable)."""
        process = psutil.Process(pid)
        return cls(pid, process.create_time(), process.exe())

    def describe(self) -> str | None:
        """None when ``pid`` is still this process; else why not (gone, a zombie, another program, restarted)."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return f"process {self.pid} has exited"
            now = ProcessIdentity(self.pid, process.create_time(), process.exe())
        except psutil.NoSuchProcess:
            return f"process {self.pid} is not running"
        except psutil.AccessDenied:
            return f"process {self.pid} belongs to another user"
        if now.exe != self.exe:
            return f"pid {self.pid} is now {now.exe}, not {self.exe}"
        if abs(now.create_time - self.create_time) > 0.05:
            return f"pid {self.pid} was started at {now.create_time:.2f}, not at {self.create_time:.2f} (pid reused)"
        return None

    def alive(self) -> bool:
        return self.describe() is None


@dataclass(frozen=True)
class LaunchRecord:
    """``<run dir>/launch.json``: who prepared one run directory, and the server started from it (once started)."""

    launcher: ProcessIdentity
    server: ProcessIdentity | None
    run_dir: str

    def in_use(self) -> bool:
        """The server is alive, or it is not started yet and its launcher is still preparing it."""
        if self.server is not None:
            return self.server.alive()
        return self.launcher.alive()

    def write(self) -> None:
        path = Path(self.run_dir) / LAUNCH_RECORD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def read(cls, run_dir: Path) -> LaunchRecord | None:
        try:
            data = json.loads((run_dir / LAUNCH_RECORD).read_text(encoding="utf-8"))
            server = ProcessIdentity(**data["server"]) if data["server"] is not None else None
            return cls(ProcessIdentity(**data["launcher"]), server, str(data["run_dir"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def new_run_dir(work_dir: Path) -> Path:
    """A fresh run directory under ``work_dir`` (named by time and our pid), recorded as ours."""
    base = work_dir / RUN_DIR
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for attempt in range(1000):
        path = base / f"{stamp}-{os.getpid()}-{attempt}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        LaunchRecord(ProcessIdentity.of(os.getpid()), None, str(path.resolve())).write()
        return path
    raise FileExistsError(f"no free run directory name under {base}")


def _inside(path: str, directory: Path) -> bool:
    path = path.removesuffix(" (deleted)")
    return path == str(directory) or path.startswith(f"{directory}{os.sep}")


def run_processes(run_dir: Path) -> list[psutil.Process]:
    """The live processes of ``run_dir``: its recorded server and every process whose executable lies inside it."""
    run_dir = run_dir.resolve()
    record = LaunchRecord.read(run_dir)
    found: dict[int, psutil.Process] = {}
    if record is not None and record.server is not None and record.server.alive():
        with contextlib.suppress(psutil.Error):
            found[record.server.pid] = psutil.Process(record.server.pid)
    for process in psutil.process_iter(["exe", "status"]):
        exe = process.info.get("exe")
        if exe and _inside(exe, run_dir) and process.info.get("status") != psutil.STATUS_ZOMBIE:
            found[process.pid] = process
    return sorted(found.values(), key=lambda p: p.pid)


def end_processes(processes: list[psutil.Process], grace: float = 3.0) -> list[int]:
    """SIGTERM ``processes``, SIGKILL what is left after ``grace`` seconds; the pids that were ended."""
    ended = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
            ended.append(process.pid)
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=grace)
    return ended


def end_leftovers(work_dir: Path, grace: float = 3.0) -> list[int]:
    """End what dead servers of ``work_dir`` left running and remove their run directories; the pids ended.

    A run still in use is left alone (another server of the same work directory, or one being started).
    """
    base = work_dir / RUN_DIR
    if not base.is_dir():
        return []
    ended: list[int] = []
    for run_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        record = LaunchRecord.read(run_dir)
        if record is not None and record.in_use():
            continue
        leftovers = run_processes(run_dir)
        if leftovers:
            pids = end_processes(leftovers, grace)
            log.warning("ended %d leftover process(es) of a dead server in %s: pids %s", len(pids), run_dir, pids)
            ended += pids
        shutil.rmtree(run_dir, ignore_errors=True)
    return ended
