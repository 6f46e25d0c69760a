"""The controller under load: API latency, its memory over a soak, and how fast the state file grows.

    python -m tritonops.loadtest.controller_bench --soak 600 --clients 20

Starts two embedded tritonservers with three small models, the real controller process (``tritonops controller
start``) guarding all three with a policy, and HTTP inference load on both servers. Then:

1. ``GET /v1/status`` and ``POST /v1/models/<m>/promote {"dry_run": true}`` from ``--clients`` concurrent clients
   for ``--api-seconds`` each: p50/p99 in ms (a dry run holds the model's rollout lock while its gates run, so
   concurrent ones on the same model are refused with 409 ``rollout_in_progress``; both kinds are reported);
2. a soak of ``--soak`` seconds: the controller's RSS sampled every 5 s (start, end, max), the state file's size
   (plus its WAL) at start and end, and the counter samples' count and bytes.

Growth per hour is reported two ways: measured over the soak (the file after a WAL checkpoint, scaled to an hour;
run the soak longer than ``window*1.25+60`` s to see the steady state, where old samples' pages are reused), and
computed from the mean compact sample size at the policy's own pace (``window/10`` s between samples).
Not a timed test: run it by hand and copy the numbers into the docs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from examples.data import sensor_frame
from tritonops.control_plane.metrics import SnapshotStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import ServerOptions, TritonServer, free_port

MODELS = ("alpha", "beta", "gamma")
FEATURES = 12


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def _file_bytes(path: Path) -> int:
    """The state file's size after folding the WAL into it (the WAL alone swings by megabytes between
    checkpoints: it is rewritten in place, not grown, so it says nothing about growth)."""
    with sqlite3.connect(path, timeout=30) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def _hammer(clients: int, seconds: float, call: Callable[[int], int]) -> dict[int, list[float]]:
    """``clients`` threads calling ``call(i)`` for ``seconds``: latencies (ms) by HTTP status."""
    by_status: dict[int, list[float]] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            code = call(i * 1000 + n)
            elapsed = (time.perf_counter() - started) * 1000
            n += 1
            with lock:
                by_status.setdefault(code, []).append(elapsed)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return by_status


def _summary(by_status: dict[int, list[float]]) -> dict[str, dict[str, float]]:
    return {
        str(code): {
            "requests": len(values),
            "p50_ms": round(_percentile(values, 0.5), 1),
            "p99_ms": round(_percentile(values, 0.99), 1),
        }
        for code, values in sorted(by_status.items())
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--api-seconds", type=float, default=20.0)
    parser.add_argument("--soak", type=float, default=600.0, help="seconds of soak (RSS, state growth)")
    parser.add_argument("--window", type=float, default=300.0, help="policy window_seconds (default 300)")
    parser.add_argument("--interval", type=float, default=15.0, help="policy interval_seconds (default 15)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="controller-bench-"))
    repository = root / "repository"
    repository.mkdir()
    data = sensor_frame(n_rows=600, n_features=FEATURES, seed=3)
    options = ConversionOptions(serving=ServingOptions(instance_count=1), native_export=False)
    for model in MODELS:
        for c in (1.0, 0.5):
            trained = Pipeline(
                [("impute", SimpleImputer()), ("scale", StandardScaler()), ("classify", LogisticRegression(C=c))]
            ).fit(data.frame, data.labels)
            convert_sklearn(trained, data.frame, name=model, repository=repository, options=options)
    admin_key = secrets.token_hex(16)
    bootstrap = "bench-" + secrets.token_hex(16)
    servers = [
        TritonServer(ServerOptions(model_repository=repository, admin_token=admin_key, work_dir=root / f"t{i}")).start()
        for i in range(2)
    ]
    port = free_port()
    state = root / "state.db"
    env = {
        **os.environ,
        "TRITONOPS_REPOSITORY": str(repository),
        "TRITONOPS_STATE": str(state),
        "TRITONOPS_ADMIN_TOKEN": admin_key,
        "TRITONOPS_BOOTSTRAP_TOKEN": bootstrap,
    }
    metrics = [a for s in servers for a in ("--metrics-url", s.metrics_url)]
    log = open(root / "controller.log", "wb")  # noqa: SIM115
    controller = subprocess.Popen(
        [sys.executable, "-m", "tritonops", "controller", "start", "--port", str(port), *metrics],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    results: dict[str, object] = {}
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        session = requests.Session()
        admin = {"Authorization": f"Bearer {bootstrap}"}
        for server in servers:
            session.post(f"{url}/v1/fleet", json={"endpoint": server.grpc_url}, headers=admin).raise_for_status()
        operator = session.post(f"{url}/v1/tokens", json={"name": "bench", "role": "operator"}, headers=admin)
        token = {"Authorization": f"Bearer {operator.json()['token']}"}
        policy = {"interval_seconds": args.interval, "window_seconds": args.window, "min_requests": 50}
        for model in MODELS:
            session.post(f"{url}/v1/models/{model}/promote", json={"version": 1}, headers=token).raise_for_status()
            session.put(f"{url}/v1/models/{model}/policy", json=policy, headers=admin).raise_for_status()

        rows = data.frame.to_numpy().astype(np.float32)

        def load(target: str, model: str) -> None:
            s = requests.Session()
            i = 0
            while not stop.is_set():
                row = [float(v) for v in rows[i % len(rows)]]
                s.post(
                    f"http://{target}/v2/models/{model}/infer",
                    json={"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": row}]},
                    timeout=10,
                )
                i += 1
                time.sleep(0.02)

        threads = [threading.Thread(target=load, args=(s.http_url, m), daemon=True) for s in servers for m in MODELS]
        for thread in threads:
            thread.start()
        time.sleep(3)

        def status(_: int) -> int:
            return requests.get(f"{url}/v1/status", headers=token, timeout=60).status_code

        def dry_run(i: int) -> int:
            body = {"version": 2, "dry_run": True}
            answer = requests.post(f"{url}/v1/models/{MODELS[i % 3]}/promote", json=body, headers=token, timeout=120)
            return answer.status_code

        results["api_status"] = _summary(_hammer(args.clients, args.api_seconds, status))
        results["api_promote_dry_run"] = _summary(_hammer(args.clients, args.api_seconds, dry_run))
        print(json.dumps({k: results[k] for k in ("api_status", "api_promote_dry_run")}, indent=2), flush=True)

        started = time.monotonic()
        size_start = _file_bytes(state)
        rss = [_rss_kib(controller.pid)]
        while time.monotonic() - started < args.soak:
            time.sleep(5)
            rss.append(_rss_kib(controller.pid))
        seconds = time.monotonic() - started
        size_end = _file_bytes(state)
        with SnapshotStore(state) as history:
            samples, sample_bytes = history.size()
        mean_sample = sample_bytes / samples if samples else 0.0
        spacing = max(1.0, args.window / 10)
        results["soak"] = {
            "seconds": round(seconds),
            "rss_mib_start": round(rss[0] / 1024, 1),
            "rss_mib_end": round(rss[-1] / 1024, 1),
            "rss_mib_max": round(max(rss) / 1024, 1),
            "rss_mib_median_second_half": round(statistics.median(rss[len(rss) // 2 :]) / 1024, 1),
            "state_bytes_start": size_start,
            "state_bytes_end": size_end,
            "state_growth_mib_per_hour_measured": round((size_end - size_start) / seconds * 3600 / 2**20, 3),
            "counter_samples_kept": samples,
            "mean_sample_bytes": round(mean_sample),
            "samples_per_hour_at_policy_pace": round(2 * 3600 / spacing),
            "sample_bytes_per_hour_at_policy_pace_mib": round(2 * 3600 / spacing * mean_sample / 2**20, 3),
            "kept_at_most_seconds": args.window * 1.25 + 60,
        }
        print(json.dumps(results["soak"], indent=2), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        stop.set()
        controller.send_signal(signal.SIGTERM)
        controller.wait(30)
        log.close()
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
