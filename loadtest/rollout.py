"""Promote and roll back while Locust keeps the model busy; pass only with 0 failed requests.

The model must already be live (``tritonops fleet add`` + ``tritonops promote``). Then::

    python -m tritonops.loadtest.rollout --model sensor --to-version 2 --http 127.0.0.1:8000 --grpc 127.0.0.1:8001

starts Locust (HTTP and gRPC users, no retries), runs ``tritonops promote <model> <to-version>`` after a
ramp-up, ``tritonops rollback <model>`` after ``--hold`` seconds, lets the load run out, and reports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tritonops.loadtest.errors import BenchmarkError
from tritonops.loadtest.run import LoadSpec, LoadSummary, collect, render, start


@dataclass(frozen=True)
class CliStep:
    command: list[str]
    exit_code: int
    seconds: float
    output: str


@dataclass(frozen=True)
class RolloutOutcome:
    load: LoadSummary
    steps: list[CliStep]

    @property
    def ok(self) -> bool:
        return self.load.total.failures == 0 and all(step.exit_code == 0 for step in self.steps)


def tritonops(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120.0) -> CliStep:
    """Run the real ``tritonops`` CLI (same interpreter) and time it."""
    command = [sys.executable, "-m", "tritonops.control_plane.cli", *args]
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, env=dict(env or os.environ), timeout=timeout, check=False
    )
    return CliStep(["tritonops", *args], done.returncode, time.monotonic() - started, done.stdout + done.stderr)


def promote_and_rollback_under_load(
    spec: LoadSpec, to_version: int, ramp: float = 3.0, hold: float = 4.0, env: Mapping[str, str] | None = None
) -> RolloutOutcome:
    """Locust for ``spec.duration`` s; promote ``to_version`` after ``ramp`` s, roll back ``hold`` s later."""
    needed = ramp + hold + 2.0
    if spec.duration < needed + 4:
        raise BenchmarkError(
            f"--duration {spec.duration} s is too short: ramp + hold + switches need ~{needed + 4:.0f} s"
        )
    with tempfile.TemporaryDirectory(prefix="tritonops-rollout-") as tmp:
        folder = Path(tmp)
        process = start(spec, folder)
        try:
            time.sleep(ramp)
            steps = [
                tritonops(["promote", spec.model, str(to_version), "--reason", "loadtest: promote under load"], env)
            ]
            time.sleep(hold)
            steps.append(tritonops(["rollback", spec.model, "--reason", "loadtest: rollback under load"], env))
        except BaseException:
            process.kill()
            raise
        summary = collect(process, folder, spec.duration + 60)
    return RolloutOutcome(summary, steps)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonops.loadtest.rollout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="live model to promote and roll back")
    parser.add_argument("--to-version", type=int, required=True, help="version to promote under load")
    parser.add_argument(
        "--repository",
        type=Path,
        default=Path(os.environ.get("TRITONOPS_REPOSITORY", "model_repository")),
        help="model repository (default: $TRITONOPS_REPOSITORY or model_repository)",
    )
    parser.add_argument("--http", default="127.0.0.1:8000", help="Triton HTTP host:port")
    parser.add_argument("--grpc", default="127.0.0.1:8001", help="Triton gRPC host:port")
    parser.add_argument("--users", type=int, default=8, help="concurrent Locust users (half HTTP, half gRPC)")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load in total")
    parser.add_argument("--ramp", type=float, default=3.0, help="seconds of load before the promote")
    parser.add_argument("--hold", type=float, default=4.0, help="seconds between promote and rollback")
    args = parser.parse_args(argv)  # fmt: skip
    console = Console(highlight=False, width=120)
    spec = LoadSpec(
        model=args.model,
        repository=args.repository,
        http_url=args.http,
        grpc_url=args.grpc,
        protocol="both",
        users=args.users,
        spawn_rate=float(args.users),
        duration=args.duration,
    )
    try:
        outcome = promote_and_rollback_under_load(spec, args.to_version, args.ramp, args.hold)
    except BenchmarkError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return exc.exit_code
    for step in outcome.steps:
        console.print(f"{' '.join(step.command)}: exit {step.exit_code} in {step.seconds:.1f} s")
    render(outcome.load, console)
    if not outcome.ok:
        console.print(f"[bold red]failed:[/] {outcome.load.total.failures} failed request(s)")
        for step in outcome.steps:
            if step.exit_code:
                console.print(step.output[-800:])
        return 1
    console.print("[green]0 failed requests through promote and rollback[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
