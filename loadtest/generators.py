"""Real load generators: ``wrk`` (HTTP/1.1 JSON POST through a Lua script) and ``h2load`` (gRPC over HTTP/2).

Both run as subprocesses at a fixed number of connections for a fixed time and report requests, failures,
requests per second and latency percentiles. ``h2load`` does not print percentiles, so it writes a per-request
log that we read; it also cannot see gRPC status trailers, so callers cross-check failures on the server side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

from tritonops.loadtest.errors import BenchmarkError

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '@@RESULT {{"requests": %d, "duration_us": %d, "socket_errors": %d, "status_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %f}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """One load run: counts, rate and latency (milliseconds)."""

    generator: str
    connections: int
    seconds: float
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    idle_before: float
    """Share of all CPUs idle during the second before the run."""
    others_cpu: float = 0.0
    """Share of all CPUs used by processes outside the benchmark during the run (background work)."""
    steal: float = 0.0
    """Share of all CPU time the hypervisor gave to other guests during the run (``steal`` in /proc/stat)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_times() -> list[int]:
    """The machine's CPU time counters (all cores): user, nice, system, idle, iowait, irq, softirq, steal, ..."""
    with open("/proc/stat", encoding="ascii") as handle:
        return [int(v) for v in handle.readline().split()[1:]]


@dataclass(frozen=True)
class CpuSpent:
    """The machine's CPU time (all cores, clock ticks) between two ``cpu_times`` readings."""

    total: int
    idle: int
    """Idle and iowait."""
    stolen: int
    """Given by the hypervisor to other guests."""

    @classmethod
    def between(cls, before: list[int], after: list[int]) -> CpuSpent:
        delta = [b - a for a, b in zip(before, after, strict=False)]
        return cls(total=sum(delta), idle=delta[3] + delta[4], stolen=delta[7] if len(delta) > 7 else 0)

    @property
    def busy(self) -> int:
        return self.total - self.idle - self.stolen


def cpu_idle_share(seconds: float = 1.0) -> float:
    """Share of CPU time (all cores) spent idle over the next ``seconds``, from ``/proc/stat``."""
    before = cpu_times()
    time.sleep(seconds)
    spent = CpuSpent.between(before, cpu_times())
    return spent.idle / max(1, spent.total)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = "nghttp2-client" if tool == "h2load" else tool
        raise BenchmarkError(f"load generator {tool!r} is not installed: `apt-get install {package}` (or `make setup`)")
    return path


def run_wrk(url: str, body: str, connections: int, seconds: float, threads: int = 2, timeout_s: int = 5) -> LoadResult:
    """POST ``body`` (JSON) to ``url`` from ``connections`` keep-alive connections for ``seconds``."""
    wrk = require("wrk")
    if "]==]" in body:
        raise BenchmarkError("the request body must not contain the Lua long-string terminator ']==]'")
    with tempfile.TemporaryDirectory(prefix="tritonops-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_WRK_SCRIPT.format(body=body), encoding="utf-8")
        idle = cpu_idle_share()
        argv = [
            wrk,
            f"-t{max(1, min(threads, connections))}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={timeout_s}s",
            "-s",
            str(script),
            url,
        ]
        with OtherLoad() as others:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("@@RESULT ")]
    if done.returncode != 0 or not lines:
        raise BenchmarkError(
            f"wrk failed (exit {done.returncode}) against {url}: {done.stderr.strip() or done.stdout[-500:]}"
        )
    raw = json.loads(lines[-1].removeprefix("@@RESULT "))
    duration = raw["duration_us"] / 1e6
    return LoadResult(
        generator="wrk",
        connections=connections,
        seconds=duration,
        requests=raw["requests"],
        failures=raw["socket_errors"] + raw["status_errors"],
        rps=raw["requests"] / duration if duration > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        idle_before=idle,
        others_cpu=others.share,
        steal=others.steal,
    )


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def run_h2load(
    url: str, body: bytes, connections: int, seconds: float, headers: Mapping[str, str], threads: int = 2
) -> LoadResult:
    """POST ``body`` over HTTP/2 to ``url`` (a gRPC method path) from ``connections`` connections."""
    h2load = require("h2load")
    with tempfile.TemporaryDirectory(prefix="tritonops-h2load-") as tmp:
        data, log = Path(tmp) / "body.bin", Path(tmp) / "requests.log"
        data.write_bytes(body)
        argv = [
            h2load,
            f"--clients={connections}",
            f"--threads={max(1, min(threads, connections))}",
            "--max-concurrent-streams=1",
            f"--duration={max(1, round(seconds))}",
            "--warm-up-time=1",
            f"--data={data}",
            f"--log-file={log}",
        ]
        for key, value in headers.items():
            argv.append(f"--header={key}: {value}")
        argv.append(url)
        idle = cpu_idle_share()
        with OtherLoad() as others:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
        if done.returncode != 0 or not log.exists():
            raise BenchmarkError(f"h2load failed (exit {done.returncode}) against {url}: {done.stderr.strip()[-500:]}")
        rows = np.loadtxt(log, dtype=np.int64, ndmin=2)  # start time (us), HTTP status, duration (us)
    if rows.size == 0:
        raise BenchmarkError(f"h2load completed no request against {url}:\n{done.stdout[-800:]}")
    starts, statuses, durations = rows[:, 0], rows[:, 1], rows[:, 2]
    elapsed = (int((starts + durations).max()) - int(starts.min())) / 1e6
    p50, p95, p99 = np.percentile(durations, [50, 95, 99]) / 1000
    return LoadResult(
        generator="h2load",
        connections=connections,
        seconds=elapsed,
        requests=len(rows),
        failures=int((statuses != 200).sum()),
        rps=len(rows) / elapsed if elapsed > 0 else 0.0,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        idle_before=idle,
        others_cpu=others.share,
        steal=others.steal,
    )


class OtherLoad:
    """CPU share (of all cores) that processes outside this process tree used while the block ran, and the share
    the hypervisor stole for other guests (a virtual machine's invisible background load).

    Processes that exit inside the block are missed, so ``share`` is a lower bound of the background load.
    """

    def __init__(self) -> None:
        self.share: float = 0.0
        self.steal: float = 0.0
        self._cpu_before: list[int] = []
        self._before: dict[tuple[int, float], float] = {}
        self._started = 0.0

    @staticmethod
    def _snapshot() -> dict[tuple[int, float], float]:
        seen = {}
        for process in psutil.process_iter(["pid", "create_time", "cpu_times"]):
            times = process.info["cpu_times"]
            if times is not None:
                seen[(process.info["pid"], process.info["create_time"])] = times.user + times.system
        return seen

    def __enter__(self) -> OtherLoad:
        self._before = self._snapshot()
        self._cpu_before = cpu_times()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._started
        spent = CpuSpent.between(self._cpu_before, cpu_times())
        self.steal = spent.stolen / max(1, spent.total)
        me = psutil.Process()
        ours = {me.pid, *(child.pid for child in me.children(recursive=True))}
        used = sum(cpu - self._before.get(key, 0.0) for key, cpu in self._snapshot().items() if key[0] not in ours)
        self.share = max(0.0, used) / max(1e-9, wall * (psutil.cpu_count() or 1))
