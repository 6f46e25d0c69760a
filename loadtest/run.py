"""Run the Locust scenarios headless from one command and report p50/p95/p99, req/s and failures.

    python -m tritonops.loadtest.run --model sensor --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 \\
        --protocol both --users 16 --spawn-rate 8 --duration 30

The workload comes from the model's manifest sample in the repository. Exit code 1 when more requests
failed than ``--max-failures`` (default 0).
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table

from tritonops.contract.manifest import load_manifest
from tritonops.converters.repository import version_numbers
from tritonops.loadtest.errors import BenchmarkError
from tritonops.loadtest.workload import GRPC_ENV, WORKLOAD_ENV, from_manifest

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
USER_CLASSES = {"http": ["TritonHttpUser"], "grpc": ["TritonGrpcUser"], "both": ["TritonHttpUser", "TritonGrpcUser"]}
ProtocolChoice = Literal["http", "grpc", "both"]


@dataclass(frozen=True)
class LoadSpec:
    """Who to load, how hard and for how long."""

    model: str
    repository: Path
    http_url: str
    grpc_url: str
    protocol: ProtocolChoice = "both"
    users: int = 16
    spawn_rate: float = 8.0
    duration: int = 30
    rows: int = 1
    version: int | None = None
    processes: int = 1


@dataclass(frozen=True)
class StatsLine:
    """One line of Locust's stats (a request name, or ``Aggregated``)."""

    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LoadSummary:
    lines: list[StatsLine]
    log_tail: str

    @property
    def total(self) -> StatsLine:
        return next(line for line in self.lines if line.name == "Aggregated")


def _workload_file(spec: LoadSpec, folder: Path) -> Path:
    model_dir = spec.repository / spec.model
    versions = version_numbers(model_dir) if model_dir.is_dir() else []
    if not versions:
        raise BenchmarkError(f"--model {spec.model!r}: no version in {model_dir}; convert one first")
    version = spec.version if spec.version is not None else versions[-1]
    if version not in versions:
        raise BenchmarkError(f"--version {version}: {spec.model!r} has versions {versions}")
    workload = from_manifest(load_manifest(model_dir / str(version)), spec.rows, spec.model)
    return workload.save(folder / "workload.json")


def start(spec: LoadSpec, folder: Path) -> subprocess.Popen[bytes]:
    """Start Locust headless in the background; its CSV stats and log land in ``folder``."""
    env = {
        **os.environ,
        WORKLOAD_ENV: str(_workload_file(spec, folder)),
        GRPC_ENV: spec.grpc_url,
        "PYTHONPATH": os.pathsep.join([str(LOCUSTFILE.parent.parent), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        f"--users={spec.users}", f"--spawn-rate={spec.spawn_rate}", f"--run-time={spec.duration}s",
        f"--host=http://{spec.http_url}", f"--csv={folder / 'locust'}", "--stop-timeout=5",
        *([f"--processes={spec.processes}"] if spec.processes > 1 else []),
        *USER_CLASSES[spec.protocol],
    ]  # fmt: skip
    log = (folder / "locust.log").open("wb")
    try:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        log.close()


_FINAL_SUMMARY = "Response time percentiles"
"""With ``--only-summary`` Locust prints this once, when the run is over and its stats are written."""
_EXIT_GRACE_S = 10.0


def _wait_for_locust(process: subprocess.Popen[bytes], folder: Path, timeout: float) -> None:
    """Wait for Locust to exit; stop it when its run is over but its exit hangs.

    Locust's exit sometimes hangs in gRPC's gevent shutdown after the run has finished and printed its final
    summary (seen about once in five runs); the stats are complete by then, so we end the process group.
    """
    deadline = time.monotonic() + timeout
    summary_seen_at: float | None = None
    log_path = folder / "locust.log"
    while process.poll() is None:
        now = time.monotonic()
        if summary_seen_at is None and _FINAL_SUMMARY in log_path.read_text(errors="replace"):
            summary_seen_at = now
        over = summary_seen_at is not None and now - summary_seen_at > _EXIT_GRACE_S
        if over or now > deadline:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the workers go with it
            process.wait()
            if over:
                return
            tail = log_path.read_text(errors="replace")[-1500:]
            raise BenchmarkError(f"locust did not finish within {timeout:.0f} s; its log ends:\n{tail}")
        time.sleep(0.2)


def collect(process: subprocess.Popen[bytes], folder: Path, timeout: float) -> LoadSummary:
    """Wait for Locust to finish and read its stats."""
    _wait_for_locust(process, folder, timeout)
    log = (folder / "locust.log").read_text(errors="replace")
    stats = folder / "locust_stats.csv"
    if not stats.exists():
        raise BenchmarkError(f"locust wrote no stats (exit {process.returncode}):\n{log[-1500:]}")
    with stats.open(newline="") as handle:
        lines = [
            StatsLine(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]),
                p50_ms=float(row["50%"]),
                p95_ms=float(row["95%"]),
                p99_ms=float(row["99%"]),
            )
            for row in csv.DictReader(handle)
        ]
    return LoadSummary(lines, "\n".join(log.splitlines()[-20:]))


def run(spec: LoadSpec) -> LoadSummary:
    """Run Locust for ``spec.duration`` seconds and return its stats."""
    with tempfile.TemporaryDirectory(prefix="tritonops-locust-") as tmp:
        folder = Path(tmp)
        return collect(start(spec, folder), folder, spec.duration + 60)


def render(summary: LoadSummary, console: Console) -> None:
    table = Table(title="locust", title_justify="left")
    for column in ("name", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for line in summary.lines:
        table.add_row(
            line.name, f"{line.requests:,}", str(line.failures), f"{line.rps:,.1f}",
            f"{line.p50_ms:g}", f"{line.p95_ms:g}", f"{line.p99_ms:g}",
        )  # fmt: skip
    console.print(table)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tritonops.loadtest.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model name (as served and in the repository)")
    p.add_argument(
        "--repository",
        type=Path,
        default=Path(os.environ.get("TRITONOPS_REPOSITORY", "model_repository")),
        help="model repository holding the manifest (default: $TRITONOPS_REPOSITORY or model_repository)",
    )
    p.add_argument("--version", type=int, default=None, help="manifest version for the rows (default: newest)")
    p.add_argument("--http", default="127.0.0.1:8000", help="Triton HTTP host:port")
    p.add_argument("--grpc", default="127.0.0.1:8001", help="Triton gRPC host:port")
    p.add_argument("--protocol", choices=sorted(USER_CLASSES), default="both", help="which Locust users to run")
    p.add_argument("--users", type=int, default=16, help="concurrent Locust users")
    p.add_argument("--spawn-rate", type=float, default=8.0, help="users started per second")
    p.add_argument("--duration", type=int, default=30, help="seconds of load")
    p.add_argument("--rows", type=int, default=1, help="rows per request")
    p.add_argument("--processes", type=int, default=1, help="Locust worker processes (one per core saturates more)")
    p.add_argument("--max-failures", type=int, default=0, help="exit 1 when more requests than this failed")
    return p  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(highlight=False, width=120)
    spec = LoadSpec(
        model=args.model, repository=args.repository, http_url=args.http, grpc_url=args.grpc,
        protocol=args.protocol, users=args.users, spawn_rate=args.spawn_rate, duration=args.duration,
        rows=args.rows, version=args.version, processes=args.processes,
    )  # fmt: skip
    try:
        summary = run(spec)
    except BenchmarkError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return exc.exit_code
    render(summary, console)
    failures = summary.total.failures
    if failures > args.max_failures:
        console.print(f"[bold red]{failures} request(s) failed[/] (allowed: {args.max_failures})\n{summary.log_tail}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
