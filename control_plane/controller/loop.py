"""Periodic tasks on a thread of their own: the controller's loop, easy to extend.

A ``TaskRunner`` owns one thread and a list of ``PeriodicTask``; each task runs when due (every ``interval``
seconds, or at once after ``wake()``), an exception is logged and the task tried again at its next turn, so one
failing task never stops the others. The controller keeps one runner for the reconciler (it must react within a
second) and one for the guardrails; other areas add tasks to either, or a runner of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_log = logging.getLogger("tritonops.controller.loop")


@dataclass
class PeriodicTask:
    """``run`` every ``interval()`` seconds (a callable, so a task can change its pace, e.g. back off)."""

    name: str
    interval: Callable[[], float]
    run: Callable[[], None]
    next_at: float = 0.0
    runs: int = 0
    failures: int = 0
    last_error: str | None = field(default=None, repr=False)


def every(seconds: float) -> Callable[[], float]:
    return lambda: seconds


class TaskRunner:
    """One thread stepping its tasks; ``stop()`` ends it between two tasks."""

    def __init__(self, name: str, tasks: list[PeriodicTask] | None = None, idle: float = 0.05) -> None:
        self.name = name
        self.tasks: list[PeriodicTask] = list(tasks or [])
        self.idle = idle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()

    def add(self, task: PeriodicTask) -> None:
        self.tasks.append(task)
        self._wake.set()

    def wake(self, task_name: str | None = None) -> None:
        """Run ``task_name`` (every task when None) at the next turn."""
        for task in self.tasks:
            if task_name is None or task.name == task_name:
                task.next_at = 0.0
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"tritonops-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_due(self) -> float:
        """Run every task that is due; the seconds until the next one is (a turn of the loop, also for tests)."""
        now = time.monotonic()
        for task in list(self.tasks):
            if self._stop.is_set():
                break
            if task.next_at > now:
                continue
            try:
                task.run()
                task.last_error = None
            except Exception as exc:  # one failing task must not stop the loop; logged with its traceback
                task.failures += 1
                task.last_error = f"{type(exc).__name__}: {exc}"
                _log.exception("task %s failed", task.name, extra={"task": task.name})
            task.runs += 1
            now = time.monotonic()
            task.next_at = now + max(task.interval(), 0.0)
        self.heartbeat = time.monotonic()
        upcoming = min((t.next_at for t in self.tasks), default=now + 1.0)
        return max(upcoming - time.monotonic(), 0.0)

    def _loop(self) -> None:
        _log.info("runner %s started with tasks %s", self.name, ", ".join(t.name for t in self.tasks))
        while not self._stop.is_set():
            pause = self.run_due()
            self._wake.wait(max(min(pause, 1.0), self.idle))
            self._wake.clear()
        _log.info("runner %s stopped", self.name)
