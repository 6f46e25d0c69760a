"""A tiny step runner for the demo: numbered headers, timings, a summary table, non-zero exit on failure."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


class StepFailed(Exception):
    """A demo step did not do what it should; the message says what was expected and what happened."""


@dataclass
class StepResult:
    title: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class Demo:
    """Runs titled steps in order; stops at the first failure and prints a summary either way."""

    total_steps: int
    cli_env: dict[str, str] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)

    @contextmanager
    def step(self, title: str) -> Iterator[StepResult]:
        number = len(self.results) + 1
        console.rule(f"[bold cyan][{number}/{self.total_steps}] {title}")
        result = StepResult(title=title, seconds=0.0, ok=False)
        started = time.monotonic()
        try:
            yield result
            result.ok = True
        finally:
            result.seconds = time.monotonic() - started
            self.results.append(result)
            mark = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
            console.print(f"{mark} in {result.seconds:.1f} s" + (f": {result.detail}" if result.detail else ""))

    def cli(
        self,
        *args: str,
        check: bool = True,
        expect_code: int | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``tritonops`` CLI as a user would, echoing the command and its output; ``env`` adds to (or,
        with an empty value, removes from) the demo's environment for this command."""
        command = [sys.executable, "-m", "tritonops.control_plane.cli", *args]
        console.print(f"[bold]$ tritonops {shlex.join(args)}[/]")
        merged = {**os.environ, **self.cli_env, **(env or {}), "COLUMNS": "120"}
        env = {key: value for key, value in merged.items() if value}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        _echo(done)
        wanted = expect_code if expect_code is not None else (0 if check else None)
        if wanted is not None and done.returncode != wanted:
            raise StepFailed(f"`tritonops {shlex.join(args)}` exited {done.returncode}, expected {wanted}")
        return done

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``python ARGS`` (e.g. ``-m tritonops.loadtest.run ...``) with the demo's environment; it must succeed."""
        console.print(f"[bold]$ python {shlex.join(args)}[/]")
        env = {key: value for key, value in {**os.environ, **self.cli_env, "COLUMNS": "120"}.items() if value}
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
        _echo(done)
        if done.returncode != 0:
            raise StepFailed(f"`python {shlex.join(args)}` exited {done.returncode}")
        return done

    def summary(self) -> bool:
        table = Table(title="demo summary")
        table.add_column("#", justify="right")
        table.add_column("step")
        table.add_column("result")
        table.add_column("seconds", justify="right")
        table.add_column("numbers")
        for number, result in enumerate(self.results, start=1):
            table.add_row(
                str(number),
                result.title,
                "[green]ok[/]" if result.ok else "[red]FAILED[/]",
                f"{result.seconds:.1f}",
                result.detail,
            )
        console.print(table)
        return all(r.ok for r in self.results) and len(self.results) == self.total_steps


def _echo(done: subprocess.CompletedProcess[str]) -> None:
    """Show a command's own output as it printed it (no re-wrapping)."""
    for stream in (done.stdout, done.stderr):
        if stream.strip():
            sys.stdout.write(stream.rstrip() + "\n")
    sys.stdout.flush()


def run_demo(main: Callable[[Demo], None], demo: Demo) -> int:
    """Run ``main``; print the summary; 0 only when every step passed."""
    try:
        main(demo)
    except (StepFailed, Exception) as exc:  # any failure ends the demo with a readable reason
        console.print(f"[bold red]demo failed:[/] {type(exc).__name__}: {exc}")
    ok = demo.summary()
    return 0 if ok else 1


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
