"""Webhook triggers from the controller: drift verdicts and alerts become deliveries, sent off the loops.

``WebhookDispatcher`` owns one worker thread and a bounded queue: ``submit`` never blocks a guardrail step or an
API request (a full queue drops the trigger and logs it), and the worker delivers with retries and writes the
delivery log (``tritonops.control_plane.webhooks``). ``drift_trigger`` turns a guardrail step into the drift
trigger of its live version, once per live version (its dedup key), with the drifted features as evidence.
"""

from __future__ import annotations

import logging
import math
import queue
import threading

from tritonops.control_plane.drift import DriftReport
from tritonops.control_plane.guardrails import Step
from tritonops.control_plane.webhooks import DeliveryLog, Trigger, deliver, load_webhooks
from tritonops.settings import Settings

_log = logging.getLogger("tritonops.controller.webhooks")


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def drift_evidence(report: DriftReport) -> dict[str, object]:
    """The drifted features with their statistics, the class mix verdict, the window and row count."""
    features = {
        f.name: {
            "method": f.method.value,
            "score": _finite(f.score),
            "threshold": f.threshold,
            "psi": _finite(f.psi),
            "jensenshannon": _finite(f.jensen_shannon),
            "ks_p_value": _finite(f.ks.p_value) if f.ks else None,
            "chisquare_p_value": _finite(f.chi_squared.p_value) if f.chi_squared else None,
        }
        for f in report.features
        if f.drifted
    }
    return {
        "drifted_features": features,
        "drifted_share": report.drifted_share,
        "dataset_drift": report.dataset_drift,
        "prediction_drift": report.prediction_drift,
        "window_seconds": report.window_seconds,
        "rows": report.rows,
    }


def drift_trigger(step: Step) -> Trigger | None:
    """The drift trigger of ``step``'s live version, or None when its drift verdict is negative or unknown."""
    report = step.drift.get("live")
    live = step.state.live
    if report is None or live is None or not report.enough_data:
        return None
    if not (report.dataset_drift or report.prediction_drift):
        return None
    what = "dataset drift" if report.dataset_drift else "prediction drift"
    drifted = ", ".join(report.drifted_features) or "the class mix"
    return Trigger(
        model=step.state.name,
        live_version=live,
        event="drift",
        reason=f"{what} on live version {live}: {drifted}",
        evidence=drift_evidence(report),
        links={"drift": f"/v1/models/{step.state.name}/drift", "history": f"/v1/history?model={step.state.name}"},
        dedup_key=f"{step.state.name}:v{live}:drift",
    )


class WebhookDispatcher:
    """Delivers triggers from one worker thread; without ``TRITONOPS_WEBHOOKS`` it accepts and drops nothing."""

    def __init__(self, settings: Settings, capacity: int = 100) -> None:
        self.settings = settings
        self.enabled = settings.webhooks_path is not None
        self.dropped = 0
        self._queue: queue.Queue[Trigger | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="tritonops-webhooks", daemon=True)

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    def submit(self, trigger: Trigger) -> bool:
        """Queue ``trigger`` for delivery; False when webhooks are off or the queue is full (logged)."""
        if not self.enabled:
            return False
        try:
            self._queue.put_nowait(trigger)
        except queue.Full:
            self.dropped += 1
            _log.error("webhook queue full: %s trigger of %s dropped", trigger.event, trigger.model,
                       extra={"model": trigger.model})  # fmt: skip
            return False
        return True

    def on_step(self, step: Step) -> None:
        """The guardrails' step callback: a positive drift verdict of a live version is submitted (deduplicated)."""
        trigger = drift_trigger(step)
        if trigger is not None:
            self.submit(trigger)

    def _run(self) -> None:
        assert self.settings.webhooks_path is not None
        while True:
            trigger = self._queue.get()
            if trigger is None:
                return
            try:
                hooks = load_webhooks(self.settings.webhooks_path)  # read each time: edits apply without restart
                with DeliveryLog(self.settings.state) as deliveries:
                    deliver(trigger, hooks, deliveries)
            except Exception:  # the worker must outlive any one bad delivery; the reason is in the log
                _log.exception("webhook delivery of %s for %s failed", trigger.event, trigger.model)
