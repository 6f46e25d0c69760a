"""The watcher loop over real HTTP scrapes of metrics text we control, and the exporter over real HTTP.

Nothing is rolled back here (``action: alert``): the rollback path needs the real Triton and lives in
tests/e2e/test_watch_rollback.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tritonops.control_plane.drift import BinnedReference, DriftConfig, drift_report
from tritonops.control_plane.errors import PolicyError
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.guardrails import Action, Policy, Watcher
from tritonops.control_plane.metrics import parse_metrics
from tritonops.control_plane.rollout import NOT_APPLIED
from tritonops.control_plane.state import AuditEntry, ModelState, StateStore
from tritonops.serving.triton import free_port
from tritonops.settings import Settings


class MetricsText:
    """A tiny real HTTP server whose /metrics body the test sets."""

    def __init__(self) -> None:
        self.body = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = owner.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def metrics() -> Iterator[MetricsText]:
    served = MetricsText()
    yield served
    served.close()


def counters(success: int, invalid: int, p99_us: float = 900.0) -> str:
    return (
        "# TYPE nv_inference_request_success counter\n"
        f'nv_inference_request_success{{model="rf",version="2"}} {success}\n'
        "# TYPE nv_inference_request_failure counter\n"
        f'nv_inference_request_failure{{model="rf",reason="BACKEND",version="2"}} 0\n'
        "# TYPE tritonops_invalid_requests_total counter\n"
        f'tritonops_invalid_requests_total{{model="rf",reason="nan",version="2"}} {invalid}\n'
        "# TYPE nv_inference_request_summary_us summary\n"
        f'nv_inference_request_summary_us{{model="rf",version="2",quantile="0.99"}} {p99_us}\n'
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    state = tmp_path / "state.db"
    with StateStore.open(state) as store:
        store.set_live("rf", 2, AuditEntry("test", "promote", "rf", None, 2, "setup", "ok"))
    return Settings(repository=tmp_path / "repo", state_path=state, admin_token=None)


def test_a_breach_must_repeat_before_it_counts_and_a_dead_endpoint_is_reported(
    metrics: MetricsText, settings: Settings
) -> None:
    policy = Policy(action=Action.ALERT, consecutive=2, min_requests=50, window_seconds=3600, drift=None, canary=None)
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    exporter = ControlPlaneExporter()
    watcher = Watcher(settings, "rf", policy, [metrics.url, dead], exporter=exporter, sleep=lambda _: None)
    totals = iter([(100, 0), (200, 30), (300, 30), (400, 90), (500, 150)])

    def advance() -> None:
        success, invalid = next(totals)
        metrics.body = counters(success, invalid)

    advance()
    first = watcher.step()  # baseline: counts since load, 100 requests, no errors
    assert list(first.scrape_failures) == [dead]
    assert "scrape failed" in first.scrape_failures[dead]
    streaks = []
    for _ in range(4):
        advance()
        step = watcher.step()
        (error,) = [c for c in step.checks if c.guardrail == "error_rate"]
        streaks.append((round(error.value or 0, 3), error.breached, step.streaks["live:error_rate"]))
        assert step.action is None  # policy says alert: never act
    # no snapshot is an hour old, so every window reaches back to the first scrape: 30/100, 30/200, 90/300, 150/400
    assert first.streaks["live:error_rate"] == 0
    assert streaks == [(0.3, True, 1), (0.15, True, 2), (0.3, True, 3), (0.375, True, 4)]
    exported = parse_metrics(exporter.render().decode())
    assert exported.total("tritonops_guardrail_breached", model="rf", guardrail="error_rate") == 1.0
    assert exported.total("tritonops_live_version", model="rf") == 2.0
    assert exported.total("tritonops_canary_version", model="rf") == 0.0
    # the action counters exist at 0 before any action, so Prometheus' increase() sees the first one
    for trigger in ("rollback", "abort-canary"):
        assert exported.has("tritonops_rollbacks_total", model="rf", trigger=trigger)
    assert exported.total("tritonops_rollbacks_total") == 0.0
    # alert mode records the breach once per run of breaches, when it first becomes due (streak 2)
    with StateStore.open(settings.state) as store:
        alerts = [e for e in store.audit("rf") if e.action == "guardrail-alert"]
    assert len(alerts) == 1 and alerts[0].from_version == 2 and alerts[0].result == "ok"
    assert alerts[0].reason == (
        "guardrail breach: live v2 error_rate 0.15 (limit 0.05; 30 errors in 200 requests; 2 steps in a row) "
        "(policy action alert: recorded, no action)"
    )


def test_one_good_step_resets_the_streak(metrics: MetricsText, settings: Settings) -> None:
    policy = Policy(action=Action.ALERT, consecutive=3, min_requests=10, window_seconds=0.001, drift=None, canary=None)
    watcher = Watcher(settings, "rf", policy, [metrics.url], sleep=lambda _: None)
    seen = []
    for success, invalid in [(100, 0), (200, 50), (300, 50), (400, 100)]:
        metrics.body = counters(success, invalid)
        step = watcher.step()
        seen.append(step.streaks.get("live:error_rate"))
    # each window is the previous scrape (window shorter than the step): 50/100 bad, 0/100 good, 50/100 bad
    assert seen == [0, 1, 0, 1]


def test_run_counts_iterations_and_needs_an_endpoint(metrics: MetricsText, settings: Settings) -> None:
    metrics.body = counters(10, 0)
    slept: list[float] = []
    watcher = Watcher(settings, "rf", Policy(interval_seconds=7, drift=None), [metrics.url], sleep=slept.append)
    summary = watcher.run(iterations=3)
    assert summary.steps == 3 and summary.last is not None and len(slept) == 2 and all(0 < s <= 7 for s in slept)
    with pytest.raises(PolicyError, match="expected at least one Triton /metrics URL"):
        Watcher(settings, "rf", Policy(), [])


def test_exporter_serves_the_contract_families_over_http() -> None:
    exporter = ControlPlaneExporter()
    exporter.set_state(ModelState("rf", 4, 5, 0.25))
    refs = [BinnedReference("x", "numeric", ("0", "1", "nan"), (0.5, 0.5, 0.0), 1000)]
    report = drift_report("rf", 4, refs, {"x": {"0": 800, "1": 200}}, {}, DriftConfig(min_rows=10), 60, rows=1000)
    exporter.set_drift(report)
    exporter.set_guardrail("rf", "error_rate", True)
    exporter.record_action("rf", "rollback", 1_700_000_000.0)
    port = exporter.serve(0)
    try:
        scraped = parse_metrics(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    finally:
        exporter.stop()
    assert scraped.total("tritonops_live_version", model="rf") == 4
    assert scraped.total("tritonops_canary_version", model="rf") == 5
    assert scraped.total("tritonops_canary_weight", model="rf") == 0.25
    feature = report.features[0]
    assert scraped.total("tritonops_drift_statistic", feature="x", statistic="psi") == pytest.approx(feature.psi)
    assert feature.ks is not None
    assert scraped.total("tritonops_drift_statistic", feature="x", statistic="ks") == pytest.approx(
        feature.ks.statistic
    )
    assert scraped.total("tritonops_drift_detected", model="rf", version="4") == 1.0
    assert scraped.total("tritonops_guardrail_breached", guardrail="error_rate") == 1.0
    assert scraped.total("tritonops_rollbacks_total", model="rf", trigger="rollback") == 1.0
    assert scraped.total("tritonops_last_rollback_timestamp_seconds", model="rf") == 1_700_000_000.0


def _breaching(target: str) -> str:
    """Live v2 and canary v3 (alias rf__canary) with 100 requests each; ``target`` refuses 40 of them."""
    served = (("rf", "2", "live"), ("rf__canary", "3", "canary"))
    success = [f'nv_inference_request_success{{model="{n}",version="{v}"}} 100' for n, v, _ in served]
    invalid = [
        f'tritonops_invalid_requests_total{{model="rf",reason="nan",version="{v}"}} {40 if who == target else 0}'
        for _, v, who in served
    ]
    families = ["# TYPE nv_inference_request_success counter", *success]
    families += ["# TYPE tritonops_invalid_requests_total counter", *invalid, ""]
    return "\n".join(families)


@pytest.mark.parametrize(
    ("action", "target", "decided"),
    [
        (Action.AUTO, "live", "rollback"),
        (Action.AUTO, "canary", "abort-canary"),
        (Action.ROLLBACK, "live", "rollback"),
        (Action.ROLLBACK, "canary", "rollback"),
        (Action.ABORT_CANARY, "live", None),
        (Action.ABORT_CANARY, "canary", "abort-canary"),
        (Action.ALERT, "live", None),
        (Action.ALERT, "canary", None),
    ],
)
def test_policy_action_decides_what_a_breach_does(
    metrics: MetricsText, settings: Settings, action: Action, target: str, decided: str | None
) -> None:
    with StateStore.open(settings.state) as store:
        store.set_canary("rf", 3, 0.5, AuditEntry("test", "canary", "rf", 2, 3, "setup", "ok"))
    metrics.body = _breaching(target)
    policy = Policy(action=action, consecutive=1, min_requests=10, drift=None, canary=None)
    step = Watcher(settings, "rf", policy, [metrics.url], sleep=lambda _: None).step()
    assert step.action == decided
    with StateStore.open(settings.state) as store:
        events = [e.action for e in store.audit("rf") if e.action.startswith("guardrail-")]
    if decided is None:  # recorded, not acted on
        assert [c.target for c in step.alerts] == [target] and events == ["guardrail-alert"]
    else:  # the decision and its audit are the point; with no fleet here a rollback fails (no earlier release)
        assert step.alerts == () and events == ["guardrail-breach"]
        if decided == "rollback":
            assert step.action_error is not None
        else:  # the canary's end is saved as desired state, not applied: the fleet is empty
            assert step.action_error is None and step.action_detail.endswith(NOT_APPLIED)
