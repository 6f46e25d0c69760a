"""Every Grafana panel query returns series for the demo model, on a real Prometheus (Debian's binary, our rule
files, 1 s scrapes) scraping a real tritonserver that serves the demo model under load.

The demo model is converted from ``examples.train`` and loaded the way the control plane does it: ``demo``
serving v1 (live) and ``demo__canary`` serving v2 by bytes, the canary with the response cache on (Triton 2.51
reports cache hits per model only where the cache is enabled, and then leaves out the request-latency summary, so
live without cache feeds the latency panels and the canary feeds the cache panel).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from control_plane.fleet import Endpoint, canary_config, canary_files, version_config
from converters.convert import convert_sklearn
from examples.train import train_numeric_pipeline
from serving.model_config import with_specific_versions
from serving.triton import TritonServer, free_port
from tests.deploy.conftest import DEPLOY

pytestmark = pytest.mark.integration

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tritonops.json"
RULES = DEPLOY / "prometheus" / "rules"
MODEL = "demo"
N_FEATURES = 6
# The control plane exporter's families: their panels need `tritonops watch` running (see the module report).
EXPORTER_ONLY = re.compile(r"^\s*(max by \(model, version\) \()?tritonops_(live|canary|drift|last_rollback)")


def _panel_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], t["expr"]) for panel in board["panels"] for t in panel.get("targets", [])]


def _as_grafana_would(expr: str) -> str:
    """The query Grafana sends with model = demo and every version selected ("All" becomes a regex union)."""
    return expr.replace("$model", MODEL).replace("$version", "(1|2)").replace("$statistic", ".*")


@pytest.fixture(scope="module")
def demo_loaded(triton_server: TritonServer, triton_repository: Path) -> Iterator[TritonServer]:
    """demo v1 live and v2 as demo__canary (response cache on), loaded through the control plane's Endpoint."""
    for seed in (0, 1):
        trained = train_numeric_pipeline(n_rows=300, n_features=N_FEATURES, seed=seed)
        convert_sklearn(trained.model, trained.frame, name=MODEL, repository=triton_repository)
    endpoint = Endpoint(triton_server.grpc_url, admin_headers={})
    try:
        live = with_specific_versions(version_config(triton_repository, MODEL, 1), [1])
        live.name = MODEL
        endpoint.load(live)
        canary = canary_config(triton_repository, MODEL, 2)
        canary.response_cache.enable = True
        endpoint.load(canary, canary_files(triton_repository, MODEL, 2))
        yield triton_server
        endpoint.unload(canary.name)
        endpoint.unload(MODEL)
    finally:
        endpoint.close()


@pytest.fixture(scope="module")
def prometheus(demo_loaded: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/usr/bin/prometheus on a free port, scraping the test Triton every second, with our rule files."""
    work = tmp_path_factory.mktemp("prometheus")
    metrics_target = demo_loaded.metrics_url.removeprefix("http://").removesuffix("/metrics")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "recording.yml"), str(RULES / "alerts.yml")],
        "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [metrics_target]}]}],
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
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (work / "prometheus.log").read_text(errors="replace")[-2000:]
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass  # not listening yet
            assert time.monotonic() < deadline, "prometheus not ready after 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _send_load(server: TritonServer, stop: threading.Event, counts: dict[str, int]) -> None:
    """Bounded load: a few repeated rows (cache hits on the canary) and now and then a NaN row (invalid)."""
    client = httpclient.InferenceServerClient(server.http_url)
    rows = np.random.default_rng(0).normal(size=(4, N_FEATURES)).astype(np.float32)
    deadline = time.monotonic() + 60
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            model = MODEL if i % 2 else f"{MODEL}__canary"
            batch = rows[i % 4 : i % 4 + 1].copy()
            if i % 25 == 0:
                batch[0, 0] = np.nan
            tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            try:
                client.infer(model, [tensor])
                counts["ok"] += 1
            except InferenceServerException:  # a rejected NaN row is part of the load: counted
                counts["rejected"] += 1
            i += 1
            time.sleep(0.004)
    finally:
        client.close()


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result = body["data"]["result"]
    assert isinstance(result, list)
    return result


def _nan_rate(url: str) -> float:
    invalid = _query(
        url, f'sum(model_version_reason:tritonops_invalid_requests:rate1m{{model="{MODEL}",reason="nan"}})'
    )
    return float(invalid[0]["value"][1]) if invalid else 0.0


def test_every_triton_and_backend_panel_returns_series_for_the_demo_model(
    demo_loaded: TritonServer, prometheus: str
) -> None:
    queries = [(title, _as_grafana_would(e)) for title, e in _panel_queries() if not EXPORTER_ONLY.match(e)]
    assert len(queries) >= 12
    stop = threading.Event()
    counts = {"ok": 0, "rejected": 0}
    load = threading.Thread(target=_send_load, args=(demo_loaded, stop, counts), daemon=True)
    load.start()
    empty: list[str] = []
    try:
        deadline = time.monotonic() + 40
        while True:
            time.sleep(1)
            empty = [f"{title}: {expr}" for title, expr in queries if not _query(prometheus, expr)]
            if (not empty and _nan_rate(prometheus) > 0) or time.monotonic() > deadline:
                break
        results = {expr: _query(prometheus, expr) for _, expr in queries}
    finally:
        stop.set()
        load.join(10)
    assert counts["ok"] > 100 and counts["rejected"] > 0, counts
    assert not empty, "panels without data:\n" + "\n".join(empty)

    # The numbers are the demo model's: both Triton names, both versions, sane values.
    rps = results[_as_grafana_would(next(e for t, e in _panel_queries() if "nv_inference_requests:rate1m" in e))]
    by_model = {(r["metric"]["model"], r["metric"]["version"]): float(r["value"][1]) for r in rps}
    assert set(by_model) == {(MODEL, "1"), (f"{MODEL}__canary", "2")}
    assert all(v > 1 for v in by_model.values()), by_model
    latency = _query(prometheus, f'model_version_quantile:nv_inference_request_duration_seconds:max{{model="{MODEL}"}}')
    quantiles = {r["metric"]["quantile"]: float(r["value"][1]) for r in latency}
    assert set(quantiles) == {"0.5", "0.95", "0.99"}
    assert 0 < quantiles["0.5"] <= quantiles["0.99"] < 1.0, quantiles
    cache = _query(prometheus, f'model_version:nv_cache_hit_ratio:rate1m{{model="{MODEL}__canary"}}')
    assert 0.5 < float(cache[0]["value"][1]) <= 1.0  # 4 distinct rows repeated: nearly every lookup hits
    # our backend labels both by the manifest's name: demo v1 (live) and demo v2 (the canary alias)
    invalid = _query(
        prometheus, f'sum by (reason) (model_version_reason:tritonops_invalid_requests:rate1m{{model="{MODEL}"}})'
    )
    errors = _query(prometheus, f'model_version:nv_inference_error_ratio:rate1m{{model="{MODEL}"}}')
    assert 0 < float(errors[0]["value"][1]) < 0.2  # 1 row in 25 is NaN; Triton alone would say 0
    by_reason = {r["metric"]["reason"]: float(r["value"][1]) for r in invalid}
    assert by_reason["nan"] > 0, by_reason  # only NaN rows were sent as bad input
    assert all(rate == 0 for reason, rate in by_reason.items() if reason != "nan"), by_reason
