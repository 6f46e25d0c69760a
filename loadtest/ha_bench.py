"""Benchmarks of the HA control plane: reconcile time of a large fleet, and leader failover time.

    python -m tritonops.loadtest.ha_bench --models 50 --endpoints 4 --state postgresql --failovers 5

1. Reconcile: ``--endpoints`` embedded tritonservers (explicit model control, nothing loaded) and ``--models``
   models (one small converted model copied under that many names), each desired live at version 1. The time of
   one ``reconcile`` from empty (every model loaded on every endpoint, ``--per-endpoint`` at once on each) and of
   the next one, when nothing differs (goals: under 30 s and under 1 s), with the per-model load-and-check time
   and where the CPU of the first went: the machine's busy/idle/stolen seconds, the Triton servers' own
   processes, their Python-backend stubs (one per load; the mean per stub) and this process (the controller).
2. Failover: a leader process holds the controller lease (``--ttl``); it is SIGKILLed and a follower polling every
   100 ms takes over; the time from the kill to the takeover, ``--failovers`` times (goal: under 10 s).

The state is a SQLite file or a throwaway PostgreSQL (``--state``). Not a timed test: run it by hand and copy the
numbers into docs/deployment.md. Each model instance on Triton is a Python backend stub process of about 90 MiB:
50 x 4 needs 200 of them (about 18 GiB); check ``free -g`` first and pick a size that fits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

from examples.train import train_numeric_pipeline
from tritonops.control_plane.fleet import PER_ENDPOINT, reconcile
from tritonops.control_plane.lease import Lease
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.loadtest.generators import CpuSpent, cpu_times
from tritonops.loadtest.postgres import PostgresCluster
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer
from tritonops.settings import StateLocation

_LEADER = """
import sys, time
from tritonops.control_plane.lease import Lease
from tritonops.control_plane.state import StateStore
from tritonops.settings import load_settings
lease = Lease(StateStore.open(load_settings().state), "bench-leader", ttl=float(sys.argv[1]))
while True:
    if lease.acquire_or_renew():
        print("leading", flush=True)
    time.sleep(lease.renew_interval)
"""


def _repository(root: Path, models: int) -> list[str]:
    """One small model converted, then copied under ``models`` names (config and manifest renamed)."""
    source = root / "source"
    options = ConversionOptions(
        serving=ServingOptions(instance_count=1, preferred_batch_sizes=(8,), max_batch_size=32),
        parity_rows=100,
        native_export=False,
    )
    trained = train_numeric_pipeline(n_rows=200, n_features=8, seed=0)
    convert_sklearn(trained.model, trained.frame, name="m", repository=source, options=options)
    repository = root / "repository"
    names = [f"m{i:03d}" for i in range(models)]
    for name in names:
        shutil.copytree(source / "m", repository / name)
        for path in (repository / name / "config.pbtxt", repository / name / "1" / "config.pbtxt"):
            if path.exists():
                path.write_text(path.read_text().replace('name: "m"', f'name: "{name}"'))
        manifest = repository / name / "1" / "manifest.json"
        body = json.loads(manifest.read_text())
        body["name"] = name
        manifest.write_text(json.dumps(body))
    return names


def _cpu_seconds(before: list[int], after: list[int], what: str) -> dict[str, float]:
    """The machine's busy, idle and stolen CPU seconds (all cores) between two ``cpu_times`` readings."""
    spent, ticks = CpuSpent.between(before, after), os.sysconf("SC_CLK_TCK")
    return {
        f"{what}_cpu_busy_s": round(spent.busy / ticks, 1),
        f"{what}_cpu_idle_s": round(spent.idle / ticks, 1),
        f"{what}_cpu_stolen_s": round(spent.stolen / ticks, 1),
    }


def _cpu_of(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _triton_cpu_seconds(processes: list[psutil.Process], before: list[float]) -> dict[str, float]:
    """CPU seconds since ``before`` of the servers' own ``processes``, and the whole CPU of their stubs (all started
    after ``before``: the servers began empty), with the number of stubs and the mean per stub."""
    stubs = [child for process in processes for child in process.children(recursive=True)]
    stub_seconds = sum(_cpu_of(stub) for stub in stubs)
    return {
        "from_empty_cpu_servers_s": round(sum(_cpu_of(p) for p in processes) - sum(before), 1),
        "from_empty_cpu_stubs_s": round(stub_seconds, 1),
        "stubs": len(stubs),
        "stub_cpu_mean_s": round(stub_seconds / len(stubs), 3) if stubs else 0.0,
    }


def bench_reconcile(
    location: StateLocation, root: Path, models: int, endpoints: int, per_endpoint: int = PER_ENDPOINT
) -> dict[str, float]:
    names = _repository(root, models)
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                TritonServer(ServerOptions(model_repository=root / "repository", work_dir=root / f"t{i}"))
            )
            for i in range(endpoints)
        ]
        with StateStore.open(location) as store:
            for server in servers:
                store.add_endpoint(server.grpc_url, AuditEntry("bench", "fleet-add", None, None, None, "", "ok"))
            for name in names:
                store.set_live(name, 1, AuditEntry("bench", "promote", name, None, 1, "benchmark", "ok"))
            myself = psutil.Process()
            processes = [psutil.Process(server.pid) for server in servers if server.pid is not None]
            servers_before = [_cpu_of(process) for process in processes]
            started, cpu_before, controller_before = time.monotonic(), cpu_times(), _cpu_of(myself)
            first = reconcile(store, root / "repository", {}, actor="bench", per_endpoint=per_endpoint)
            from_empty, cpu_after = time.monotonic() - started, cpu_times()
            controller_cpu = _cpu_of(myself) - controller_before
            triton_cpu = _triton_cpu_seconds(processes, servers_before)
            started = time.monotonic()
            second = reconcile(store, root / "repository", {}, actor="bench", per_endpoint=per_endpoint)
            in_sync = time.monotonic() - started
            if not first.ok or second.divergence_count:
                logs = "\n".join(f"{s.grpc_url}:\n{s.log_tail(40)}" for s in servers)
                raise RuntimeError(f"reconcile did not converge: {[r.errors for r in first.endpoints]}\n{logs}")
    seconds = sorted(c.seconds for r in first.endpoints for c in r.changes)
    return {
        "models": models,
        "endpoints": endpoints,
        "per_endpoint": per_endpoint,
        "actions": sum(len(r.actions) for r in first.endpoints),
        "model_load_median_s": round(statistics.median(seconds), 2),
        "model_load_max_s": round(seconds[-1], 2),
        "from_empty_s": round(from_empty, 2),
        **_cpu_seconds(cpu_before, cpu_after, "from_empty"),
        "from_empty_cpu_controller_s": round(controller_cpu, 1),
        **triton_cpu,
        "in_sync_s": round(in_sync, 3),
    }


def bench_failover(location: StateLocation, ttl: float, rounds: int) -> dict[str, float]:
    env = {**os.environ, "TRITONOPS_STATE": str(location)}
    if location.password is not None:
        env["TRITONOPS_STATE_PASSWORD"] = location.password
    times = []
    with StateStore.open(location) as store:
        for _ in range(rounds):
            leader = subprocess.Popen([sys.executable, "-c", _LEADER, str(ttl)], stdout=subprocess.PIPE, env=env)
            assert leader.stdout is not None
            while leader.stdout.readline().strip() != b"leading":
                pass
            follower = Lease(store, "bench-follower", ttl=ttl)
            assert not follower.acquire_or_renew()
            os.kill(leader.pid, signal.SIGKILL)
            killed = time.monotonic()
            leader.wait()
            leader.stdout.close()
            while not follower.acquire_or_renew():
                time.sleep(0.1)
            times.append(time.monotonic() - killed)
            follower.release()
    return {
        "ttl_s": ttl,
        "rounds": rounds,
        "median_s": round(statistics.median(times), 2),
        "max_s": round(max(times), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--per-endpoint", type=int, default=PER_ENDPOINT, help="models loaded at once per endpoint")
    parser.add_argument("--state", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--ttl", type=float, default=6.0, help="lease TTL of the failover rounds (s)")
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--skip-reconcile", action="store_true")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tritonops-ha-bench-"))
    try:
        with ExitStack() as stack:
            if args.state == "postgresql":
                cluster = stack.enter_context(PostgresCluster())
                location, failover_location = cluster.new_database(), cluster.new_database()
            else:
                location = StateLocation(path=root / "state.db")
                failover_location = StateLocation(path=root / "failover.db")
            results: dict[str, object] = {"state": args.state}
            if not args.skip_reconcile:
                results["reconcile"] = bench_reconcile(location, root, args.models, args.endpoints, args.per_endpoint)
            results["failover"] = bench_failover(failover_location, args.ttl, args.failovers)
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
