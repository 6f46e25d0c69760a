"""The lifecycle every throwaway server of the tests and benchmarks shares: ``with Server(...) as s:``."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class LocalServer(ABC):
    """A server this process starts and owns: ``start`` brings it up (or raises), ``stop`` always ends it.

    ``with`` stops a server whose ``start`` failed halfway, so a failed fixture leaves no process behind.
    """

    process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def start(self) -> Self:
        """Start the server and return once it serves."""

    def stop(self) -> None:
        """End the server's process: SIGTERM, then SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
