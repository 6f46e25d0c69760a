"""Windows from a real Prometheus: the same numbers as the compact counter samples, and guardrails that act on them.

A real Prometheus (Debian's) scrapes the session's real embedded Triton every second with the shipped recording
rules. For the same traffic, ``PrometheusWindows`` (PromQL over the HTTP API) and ``FleetSampler`` (scrapes and
samples) must give the same window: request counts equal up to ``increase``'s extrapolation over one scrape at
each edge, error rate, p99 and the drift mix equal. Then a controller started with ``--prometheus-url`` (and no
counter samples) rolls a bad version back from those windows alone.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.utils import InferenceServerException

from examples.data import sensor_frame
from tests.e2e.conftest import running_controller
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.guardrails import parse_policy_data
from tritonops.control_plane.metrics import (
    FleetSampler,
    FleetWindow,
    MemoryHistory,
    SnapshotStore,
    VersionStats,
    feature_bin_counts,
    prediction_counts,
)
from tritonops.control_plane.policies import store_policy
from tritonops.control_plane.prometheus import PrometheusConfig, PrometheusWindows
from tritonops.control_plane.rollout import fleet_add, promote
from tritonops.control_plane.state import StateStore
from tritonops.converters.convert import ConversionOptions, convert_sklearn
from tritonops.model_config import ServingOptions
from tritonops.serving.triton import TritonServer, free_port
from tritonops.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_SECONDS = 1.0


def _wait(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.fixture(scope="module")
def prometheus(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/usr/bin/prometheus on a free port scraping the session's Triton every second, with the shipped rules."""
    work = tmp_path_factory.mktemp("prometheus-windows")
    triton = triton_server.metrics_url.removeprefix("http://").removesuffix("/metrics")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS:g}s", "evaluation_interval": f"{SCRAPE_SECONDS:g}s"},
        "rule_files": [str(ROOT / "deploy" / "prometheus" / "rules" / "recording.yml")],
        "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [triton]}]}],
    }
    (work / "prometheus.yml").write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                "/usr/bin/prometheus",
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            try:
                return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait(ready, 60, "prometheus")
        _wait(lambda: _query(url, 'up{job="triton"} == 1'), 30, "prometheus to scrape triton")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _convert(repository: Path, name: str, *, strict_too: bool) -> Any:
    data = sensor_frame(n_rows=400, n_features=4, seed=31)
    options = ConversionOptions(serving=ServingOptions(drift_flush_seconds=0.2, instance_count=1), native_export=False)
    tolerant = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("lr", LogisticRegression())])
    models = [tolerant]
    if strict_too:  # version 2 refuses rows with a missing value: a bad version
        models.append(Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]))
    for model in models:
        convert_sklearn(
            model.fit(data.frame, data.labels), data.frame, name=name, repository=repository, options=options
        )
    return data


def _send(
    url: str, model: str, rows: np.ndarray[Any, Any], *, bad_every: int, bad: float, count: int
) -> dict[str, int]:
    """``count`` requests cycling over ``rows``; every ``bad_every``-th row gets ``bad`` in its first feature."""
    counts = {"ok": 0, "refused": 0}
    client = grpcclient.InferenceServerClient(url)
    try:
        for i in range(count):
            row = rows[i % len(rows)].copy()
            if i % bad_every == 0:
                row[0] = bad
            tensor = grpcclient.InferInput("input", [1, row.size], "FP32")
            tensor.set_data_from_numpy(row.reshape(1, -1))
            try:
                client.infer(model, [tensor])
                counts["ok"] += 1
            except InferenceServerException:
                counts["refused"] += 1
    finally:
        client.close()
    return counts


def _stats(fleet: FleetWindow, model: str) -> VersionStats:
    assert fleet.windows, f"no window: {fleet.failures}"
    return fleet.stats[(model, "1")]


def _shares(counts: dict[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {key: value / total for key, value in counts.items()}


def test_prometheus_windows_equal_the_samples_windows_for_the_same_traffic(
    prometheus: str, triton_server: TritonServer, triton_repository: Path, tmp_path: Path
) -> None:
    model = "promwindows"
    data = _convert(triton_repository, model, strict_too=False)
    settings = Settings(repository=triton_repository, state_path=tmp_path / "state.db", admin_token=None)
    fleet_add(settings, triton_server.grpc_url, actor="test")
    promote(settings, model, 1, actor="test", reason="windows")
    rows = data.frame.to_numpy(dtype=np.float32)[:40]
    # Warm-up with the very rows of the traffic below: every series (bins, classes, the invalid reason) exists in
    # Prometheus before the window opens, so increase() misses no first sample.
    _send(triton_server.grpc_url, model, rows, bad_every=5, bad=np.inf, count=40)
    _wait(
        lambda: _query(prometheus, f'tritonops_invalid_requests_total{{model="{model}"}} > 0'),
        30,
        "the warm-up in prometheus",
    )
    time.sleep(3 * SCRAPE_SECONDS)

    sampler = FleetSampler(lambda: [triton_server.metrics_url], MemoryHistory(600.0), max_age=0.0)
    exporter = ControlPlaneExporter()
    source = PrometheusWindows(PrometheusConfig(prometheus), exporter=exporter, max_age=0.0)
    try:
        started = time.time()
        sampler.window(None)  # the samples' baseline: quiet, after the warm-up
        time.sleep(8 * SCRAPE_SECONDS)  # a longer window: increase()'s extrapolation is a smaller share of it
        sent = _send(triton_server.grpc_url, model, rows, bad_every=5, bad=np.inf, count=300)
        time.sleep(4 * SCRAPE_SECONDS)  # the last requests scraped a few times; the backend flushed its counters
        lookback = time.time() - started - SCRAPE_SECONDS  # opens after the baseline, before the traffic
        from_samples = sampler.window(lookback)
        read_at = time.perf_counter()
        from_prometheus = source.window(lookback)
        read_seconds = time.perf_counter() - read_at
        since_load_samples = sampler.window(None)
        since_load_prometheus = source.window(None)
    finally:
        sampler.close()
        source.close()

    assert sent == {"ok": 240, "refused": 60}
    s, p = _stats(from_samples, model), _stats(from_prometheus, model)
    assert (s.requests, s.errors) == (300, 60)
    assert from_prometheus.seconds == pytest.approx(lookback)
    # increase() extrapolates each series' sampled span (at least lookback - 2 scrapes) to the whole window: counts
    # can only grow, by at most that factor; ratios, shares and quantiles move by less than the same tolerance.
    most = lookback / (lookback - 2.2 * SCRAPE_SECONDS)
    tolerance = most - 1
    assert s.requests <= p.requests <= s.requests * most
    assert s.errors <= p.errors <= s.errors * most
    assert p.error_rate == pytest.approx(s.error_rate, rel=tolerance)
    assert s.latency_source == p.latency_source == "backend histogram"
    assert p.p99_ms == pytest.approx(s.p99_ms, rel=tolerance)
    bins_s = feature_bin_counts(from_samples.delta, model, 1)
    bins_p = feature_bin_counts(from_prometheus.delta, model, 1)
    assert bins_s.keys() == bins_p.keys() and bins_s
    for feature, counts in bins_s.items():
        assert _shares(bins_p[feature]) == pytest.approx(_shares(counts), rel=tolerance, abs=0.01), feature
    classes_s = prediction_counts(from_samples.delta, model, 1)
    classes_p = prediction_counts(from_prometheus.delta, model, 1)
    assert _shares(classes_p) == pytest.approx(_shares(classes_s), rel=tolerance)
    print(
        f"window {lookback:.1f} s: requests {s.requests:.0f} (samples) vs {p.requests:.2f} (Prometheus), "
        f"error rate {s.error_rate:.4f} vs {p.error_rate:.4f}, p99 {s.p99_ms:.3f} vs {p.p99_ms:.3f} ms; "
        f"one window read from Prometheus {read_seconds * 1000:.0f} ms"
    )
    # Since load: the counters themselves, the same values (traffic is quiet, the last scrape is recent); promote's
    # smoke check adds its own requests to the 340 sent here.
    load_s, load_p = _stats(since_load_samples, model), _stats(since_load_prometheus, model)
    assert (load_p.requests, load_p.errors) == (load_s.requests, load_s.errors)
    assert load_s.requests >= 340 and load_s.errors == 68
    assert exporter.prometheus_failures._value.get() == 0


def test_an_error_answer_of_prometheus_is_no_data_counted_and_named(prometheus: str) -> None:
    exporter = ControlPlaneExporter()
    source = PrometheusWindows(PrometheusConfig(prometheus, selector="job="), exporter=exporter, max_age=0.0)
    try:
        fleet = source.window(60.0)
        again = source.window(60.0)
    finally:
        source.close()
    assert fleet.windows == {} and again.windows == {}
    (why,) = fleet.failures.values()
    assert "bad_data" in why and "HTTP 400" in why and prometheus in why
    assert exporter.prometheus_failures._value.get() == 2


def test_a_controller_with_prometheus_only_rolls_a_bad_version_back(
    prometheus: str, triton_server: TritonServer, triton_repository: Path, tmp_path: Path
) -> None:
    model = "promguard"
    data = _convert(triton_repository, model, strict_too=True)
    settings = Settings(repository=triton_repository, state_path=tmp_path / "state.db", admin_token=None)
    fleet_add(settings, triton_server.grpc_url, actor="test")
    promote(settings, model, 1, actor="test", reason="good")
    promote(settings, model, 2, actor="test", reason="the regression")
    policy = {
        "interval_seconds": 1,
        "window_seconds": 15,
        "min_requests": 20,
        "consecutive": 2,
        "action": "auto",
        "error_rate": {"max": 0.05},
        "drift": None,
        "canary": None,
    }
    with StateStore.open(settings.state) as store:
        store_policy(store, model, parse_policy_data(policy), actor="test", repository=triton_repository)
    rows = data.frame.to_numpy(dtype=np.float32)[:50]
    with running_controller(
        tmp_path, triton_repository, settings.state_path, None, "--prometheus-url", prometheus
    ) as controller:
        started = time.monotonic()
        sent = {"ok": 0, "refused": 0}

        def rolled_back() -> Any:
            for key, value in _send(triton_server.grpc_url, model, rows, bad_every=3, bad=np.nan, count=60).items():
                sent[key] += value
            with StateStore.open(settings.state) as store:
                state = store.model(model)
                events = store.audit(model)
            done = [e for e in events if e.action == "rollback" and e.result == "ok"]
            return events if done and state is not None and state.live == 1 else None

        events = _wait(rolled_back, 120, f"the guardrail rollback:\n{controller.log_tail()}")
        took = time.monotonic() - started
        metrics = requests.get(f"{controller.url}/metrics", timeout=10).text
    with SnapshotStore(settings.state) as history:
        samples, _ = history.size()
    (breach,) = [e for e in events if e.action == "guardrail-breach"]
    assert breach.actor == "controller/guardrails" and breach.from_version == 2
    assert "live v2 error_rate" in breach.reason
    evidence = json.loads(breach.detail)
    (check,) = evidence["checks"]
    assert check["guardrail"] == "error_rate" and check["value"] > 0.2 and check["limit"] == 0.05
    assert evidence["scrape_failures"] == {}
    (rollback,) = [e for e in events if e.action == "rollback" and e.result == "ok"]
    assert rollback.from_version == 2 and rollback.to_version == 1
    assert sent["refused"] > 0 and sent["ok"] > 0
    assert samples == 0, "with --prometheus-url the controller stores no counter samples"
    assert "tritonops_prometheus_failures_total 0.0" in metrics
    print(f"bad version served -> rolled back from Prometheus windows in {took:.1f} s")
