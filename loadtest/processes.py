"""Start a server process for the benchmark, wait until it answers, and stop it (its whole process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import requests

from tritonops.loadtest.errors import BenchmarkError


class ManagedProcess:
    """A child process in its own session: ``with ManagedProcess(...) as p:`` starts it and waits for ``ready_url``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.name, self.argv, self.ready_url, self.log_path = name, list(argv), ready_url, log_path
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise BenchmarkError(f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.ready_url, timeout=1.0).status_code == 200:
                    return self
            except requests.RequestException:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.stop()
                raise BenchmarkError(
                    f"{self.name} not ready after {self.startup_timeout:.0f} s ({self.ready_url}):\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
