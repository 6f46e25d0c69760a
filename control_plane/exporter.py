"""The control plane's own Prometheus metrics (names in docs/contracts.md), served on a port of its own.

The watcher feeds it after every step; Prometheus scrapes it next to Triton. Families:

- ``tritonops_live_version{model}``, ``tritonops_canary_version{model}`` (0 = none), ``tritonops_canary_weight{model}``
- ``tritonops_drift_statistic{model,version,feature,statistic}`` (``psi``, ``jensenshannon``, ``ks``, ``chisquare_p``)
- ``tritonops_drift_detected{model,version}`` (1 = dataset drift)
- ``tritonops_guardrail_breached{model,guardrail}`` (1 while the guardrail is breached)
- ``tritonops_last_rollback_timestamp_seconds{model}``, ``tritonops_rollbacks_total{model,trigger}``
- ``tritonops_controller_leader`` (1 on the replica holding the controller lease or a lone watch, 0 on the others)

Only the leader judges: a replica that does not lead exports no versions, drift or guardrail series (what it set
while it led is removed at its first lease renewal without the lease), so a sum or max over every replica's
scrape is the leader's view.
"""

from __future__ import annotations

from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from tritonops.control_plane.drift import DriftReport, FeatureDrift
from tritonops.control_plane.state import ModelState

_STATISTICS = ("psi", "jensenshannon", "ks", "chisquare_p")
TRIGGERS = ("rollback", "abort-canary")
"""The ``trigger`` label values of ``tritonops_rollbacks_total``: the automatic actions."""


def _statistics(feature: FeatureDrift) -> dict[str, float | None]:
    return {
        "psi": feature.psi,
        "jensenshannon": feature.jensen_shannon,
        "ks": feature.ks.statistic if feature.ks else None,
        "chisquare_p": feature.chi_squared.p_value if feature.chi_squared else None,
    }


class ControlPlaneExporter:
    """Gauges and counters in a registry of their own (so tests and several watchers never collide)."""

    def __init__(self, registry: CollectorRegistry | None = None, leads: bool = True) -> None:
        """``leads``: whether this process judges from the start (a lone ``tritonops watch`` does; a controller
        replica does not until it holds the lease, see ``set_leader``)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.live_version = Gauge("tritonops_live_version", "Live version per model", ["model"], registry=r)
        self.canary_version = Gauge(
            "tritonops_canary_version", "Canary (candidate) version per model, 0 when none", ["model"], registry=r
        )
        self.canary_weight = Gauge(
            "tritonops_canary_weight", "Share of traffic sent to the canary", ["model"], registry=r
        )
        self.drift_statistic = Gauge(
            "tritonops_drift_statistic",
            "Drift statistic of a feature over the watch window",
            ["model", "version", "feature", "statistic"],
            registry=r,
        )
        self.drift_detected = Gauge(
            "tritonops_drift_detected",
            "1 when the share of drifted features reaches the threshold",
            ["model", "version"],
            registry=r,
        )
        self.guardrail_breached = Gauge(
            "tritonops_guardrail_breached", "1 while a guardrail is breached", ["model", "guardrail"], registry=r
        )
        self.last_rollback = Gauge(
            "tritonops_last_rollback_timestamp_seconds", "Unix time of the last automatic action", ["model"], registry=r
        )
        self.rollbacks = Counter(
            "tritonops_rollbacks", "Automatic rollbacks and canary aborts", ["model", "trigger"], registry=r
        )
        self.leader = Gauge(
            "tritonops_controller_leader",
            "1 on the process that judges (the controller replica holding the lease, or a lone watch), else 0",
            registry=r,
        )
        self.leader.set(1.0 if leads else 0.0)
        self.prometheus_failures = Counter(
            "tritonops_prometheus_failures",
            "Window reads from Prometheus that failed (that step's guardrails had no data)",
            registry=r,
        )
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def set_state(self, state: ModelState) -> None:
        """The desired state; also puts the model's action counters on the page at 0.

        A counter series that first appears at 1 hides that increase from ``increase()``/``rate()`` (Prometheus
        takes the first sample as the baseline), so the first automatic rollback would never alert.
        """
        for trigger in TRIGGERS:
            self.rollbacks.labels(state.name, trigger)
        self.live_version.labels(state.name).set(state.live or 0)
        self.canary_version.labels(state.name).set(state.canary or 0)
        self.canary_weight.labels(state.name).set(state.canary_weight if state.canary is not None else 0.0)

    def set_drift(self, report: DriftReport) -> None:
        version = str(report.version)
        features = [*report.features, *([report.prediction] if report.prediction else [])]
        for feature in features:
            for name, value in _statistics(feature).items():
                if value is not None:
                    self.drift_statistic.labels(report.model, version, feature.name, name).set(value)
        self.drift_detected.labels(report.model, version).set(1.0 if report.dataset_drift else 0.0)

    def set_leader(self, leads: bool) -> None:
        """Whether this replica leads; one that does not forgets the versions, drift and guardrails it exported."""
        self.leader.set(1.0 if leads else 0.0)
        if not leads:
            for gauge in (
                self.live_version,
                self.canary_version,
                self.canary_weight,
                self.drift_statistic,
                self.drift_detected,
                self.guardrail_breached,
            ):
                gauge.clear()

    def set_guardrail(self, model: str, guardrail: str, breached: bool) -> None:
        self.guardrail_breached.labels(model, guardrail).set(1.0 if breached else 0.0)

    def record_action(self, model: str, trigger: str, at: float) -> None:
        """An automatic rollback or canary abort happened at ``at`` (Unix seconds)."""
        self.rollbacks.labels(model, trigger).inc()
        self.last_rollback.labels(model).set(at)

    def record_prometheus_failure(self) -> None:
        self.prometheus_failures.inc()

    def render(self) -> bytes:
        """The exposition text, as a scrape would get it."""
        return generate_latest(self.registry)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``address:port`` in a daemon thread (port 0 picks one); returns the port."""
        self._server, self._thread = start_http_server(port, address, registry=self.registry)
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
