"""Every Grafana panel query (and the rollback annotation) returns series for the demo model, on a real
Prometheus (Debian's binary, our rule files, 1 s scrapes) scraping a real tritonserver under load and the real
control plane exporter (`tritonops watch --metrics-port`).

Phase 1: demo v1 live + v2 canary (split inside Triton, weight 0.5) + v2 as a shadow of every answered row,
healthy: every panel must show data, the canary and shadow panels included. Phase 2: the canary gets mostly invalid
rows, `tritonops watch` aborts it by itself, and the rollback annotation's query must then return that event.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.deploy.conftest import CANARY, DEPLOY, MODEL, DemoStack, Load, answers, running_load
from tritonops.control_plane.rollout import shadow, stop_shadow
from tritonops.control_plane.state import StateStore
from tritonops.serving.triton import free_port

pytestmark = pytest.mark.integration

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tritonops.json"
RULES = DEPLOY / "prometheus" / "rules"
# Fast steps, and only the error guardrails act: the fixed rows of the load drift by design.
POLICY = """
interval_seconds: 1
window_seconds: 4
min_requests: 20
consecutive: 2
action: auto
error_rate: {max: 0.3}
drift: {on_prediction_drift: false, on_dataset_drift: false}
canary: {max_error_rate_increase: 0.05, max_p99_ratio: null, accuracy_alpha: null}
"""


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _as_grafana_would(expr: str) -> str:
    """The query Grafana sends with model = demo and every value selected ("All" becomes a regex union)."""
    return (
        expr.replace("$model", MODEL)
        .replace("$version", "(1|2)")
        .replace("$statistic", ".*")
        .replace("$instance", ".*")
    )


def _panel_queries() -> list[tuple[str, str]]:
    return [(p["title"], _as_grafana_would(t["expr"])) for p in _dashboard()["panels"] for t in p.get("targets", [])]


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", f"{expr}: {body}"
    result = body["data"]["result"]
    assert isinstance(result, list)
    return result


def _value(url: str, expr: str) -> float:
    result = _query(url, expr)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while not answers(url):
        assert process.poll() is None, f"{what} exited: " + log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, f"{what} not ready after 30 s"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def exporter(demo_stack: DemoStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tritonops watch demo` with its exporter on a free port; yields the exporter's host:port."""
    work = tmp_path_factory.mktemp("watch")
    (work / "policy.yaml").write_text(POLICY, encoding="utf-8")
    port = free_port()
    env = dict(os.environ)
    env.update(
        TRITONOPS_STATE=str(demo_stack.settings.state_path),
        TRITONOPS_REPOSITORY=str(demo_stack.settings.repository),
    )
    env.pop("TRITONOPS_ADMIN_TOKEN", None)
    command = [
        sys.executable, "-m", "tritonops.control_plane.cli", "watch", MODEL, "--policy", str(work / "policy.yaml"),
        "--metrics-url", demo_stack.server.metrics_url, "--metrics-port", str(port),
    ]  # fmt: skip
    with (work / "watch.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/metrics", process, work / "watch.log", "tritonops watch")
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def shadowed(demo_stack: DemoStack) -> Iterator[None]:
    """Version 2 also shadows live (every answered row mirrored), for the shadow panels; stopped at the end."""
    shadow(demo_stack.settings, MODEL, 2, 1.0, actor="tests", reason="shadow panels")
    try:
        yield
    finally:
        stop_shadow(demo_stack.settings, MODEL, actor="tests")


@pytest.fixture(scope="module")
def prometheus(demo_stack: DemoStack, exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/usr/bin/prometheus on a free port, scraping Triton and the exporter every second, with our rule files."""
    work = tmp_path_factory.mktemp("prometheus")
    triton = demo_stack.server.metrics_url.removeprefix("http://").removesuffix("/metrics")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "recording.yml"), str(RULES / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "triton", "static_configs": [{"targets": [triton]}]},
            {"job_name": "tritonops-control-plane", "static_configs": [{"targets": [exporter]}]},
        ],
    }
    (work / "prometheus.yml").write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    port = free_port()
    command = [
        "/usr/bin/prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/-/ready", process, work / "prometheus.log", "prometheus")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def _wait_for(check: Any, seconds: float) -> Any:
    """Call ``check`` every second until it returns something truthy or ``seconds`` pass; return the last."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_every_panel_returns_series_then_the_rollback_shows_as_an_annotation(
    demo_stack: DemoStack, shadowed: None, prometheus: str
) -> None:
    queries = _panel_queries()
    assert len(queries) >= 18
    nan_rate = f'sum(model_version_reason:tritonops_invalid_requests:rate1m{{model="{MODEL}",reason="nan"}})'

    def missing() -> list[str]:
        empty = [f"{title}: {expr}" for title, expr in queries if not _query(prometheus, expr)]
        if not _query(prometheus, nan_rate) or _value(prometheus, nan_rate) == 0:
            empty.append(f"(the NaN rows sent are not counted yet: {nan_rate})")
        return empty

    with running_load(demo_stack.server, Load()) as load:
        # -- phase 1: live and canary healthy --------------------------------------------------------------------
        time.sleep(3)
        _wait_for(lambda: not missing(), 45)
        empty = missing()
        assert load.ok > 100 and load.rejected > 0, load
        assert not empty, "panels without data:\n" + "\n".join(empty)

        rps = _query(prometheus, f'model_version:nv_inference_requests:rate1m{{model=~"{MODEL}.*"}}')
        by_model = {(r["metric"]["model"], r["metric"]["version"]): float(r["value"][1]) for r in rps}
        assert set(by_model) == {(MODEL, "1"), (CANARY, "2")}
        assert all(v > 1 for v in by_model.values()), by_model
        for name in (MODEL, CANARY):  # the cached canary too: Triton's own cache (which hid the summary) stays off
            latency = f'model_version_quantile:nv_inference_request_duration_seconds:max{{model="{name}"}}'
            quantiles = {r["metric"]["quantile"]: float(r["value"][1]) for r in _query(prometheus, latency)}
            assert set(quantiles) == {"0.5", "0.95", "0.99"}, name
            assert 0 < quantiles["0.5"] <= quantiles["0.99"] < 1.0, quantiles
        # the backend's cache, labelled by manifest name and the canary's version
        cache_ratio = f'model_version:tritonops_cache_hit_ratio:rate1m{{model="{MODEL}",version="2"}}'
        assert 0.5 < _value(prometheus, cache_ratio) <= 1.0
        assert (
            _query(prometheus, f'model_version:tritonops_cache_hit_ratio:rate1m{{model="{MODEL}",version="1"}}') == []
        )
        error_ratio = f'model_version:nv_inference_error_ratio:rate1m{{model="{MODEL}"}}'
        # live's share of the invalid rows is random (the canary takes half): give the 1-minute rate a few scrapes
        ratio = _wait_for(lambda: (r := _value(prometheus, error_ratio)) > 0 and r, 30)
        assert 0 < ratio < 0.2, f"{error_ratio} = {ratio}"
        assert _value(prometheus, f'tritonops_live_version{{model="{MODEL}"}}') == 1
        assert _value(prometheus, f'tritonops_canary_version{{model="{MODEL}"}}') == 2
        assert _value(prometheus, f'tritonops_canary_weight{{model="{MODEL}"}}') == 0.5
        panels = {p["title"]: [_as_grafana_would(t["expr"]) for t in p["targets"]] for p in _dashboard()["panels"]
                  if "targets" in p}  # fmt: skip
        share, fallbacks = panels["Canary traffic share"]
        (canary_share,) = _query(prometheus, share)
        assert canary_share["metric"] == {"__name__": "model_version:tritonops_canary_share:rate1m", "model": MODEL,
                                          "version": "1", "canary_version": "2"}  # fmt: skip
        assert 0.3 < float(canary_share["value"][1]) < 0.7, canary_share  # weight 0.5 of live's requests
        assert [float(r["value"][1]) for r in _query(prometheus, fallbacks)] == [0.0]  # the canary answered all
        mirrored, _, _ = panels["Shadow rows per second"]
        (mirroring,) = _query(prometheus, mirrored)
        assert (mirroring["metric"]["version"], mirroring["metric"]["shadow_version"]) == ("1", "2")
        assert float(mirroring["value"][1]) > 1
        agreement = float(_query(prometheus, panels["Shadow agreement"][0])[0]["value"][1])
        mean_diff, p99_diff = (float(_query(prometheus, q)[0]["value"][1]) for q in panels[
            "Shadow |probability difference|"])  # fmt: skip
        assert 0 < agreement <= 1 and 0 < mean_diff <= p99_diff <= 1  # another model: some rows disagree
        (latency,) = panels["Shadow latency p50 / p99"]
        quantiles = {r["metric"]["quantile"]: float(r["value"][1]) for r in _query(prometheus, latency)}
        assert set(quantiles) == {"0.5", "0.99"} and 0 < quantiles["0.5"] <= quantiles["0.99"] < 1, quantiles
        psi = _query(prometheus, f'tritonops_drift_statistic{{model="{MODEL}",version="1",statistic="psi"}}')
        assert len(psi) >= 6 and all(float(r["value"][1]) >= 0 for r in psi)  # one per feature (+ predictions)

        # -- phase 2: the canary goes bad; the watcher aborts it; Grafana's annotation query finds the event ------
        annotation = _as_grafana_would(_dashboard()["annotations"]["list"][0]["expr"])
        assert _query(prometheus, annotation) == []  # nothing rolled back yet
        started = time.time()
        load.nan_every[CANARY] = 2  # every other canary request is invalid
        events = _wait_for(lambda: _query(prometheus, annotation), 40)
    assert len(events) == 1, "no rollback annotation after the canary failed"
    at_ms = float(events[0]["value"][1])
    assert started * 1000 < at_ms <= time.time() * 1000  # Grafana places it by this value: the action's time
    # every trigger's series exists from the first step (so increase() sees the first rollback): one per trigger
    rollbacks = _query(prometheus, f'tritonops_rollbacks_total{{model="{MODEL}"}}')
    by_trigger = {r["metric"]["trigger"]: float(r["value"][1]) for r in rollbacks}
    assert by_trigger == {"abort-canary": 1.0, "rollback": 0.0}
    with StateStore.open(demo_stack.settings.state) as store:
        state = store.model(MODEL)
    assert state is not None and state.live == 1 and state.canary is None
