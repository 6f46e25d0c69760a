"""The controller's driver of progressive rollouts: each turn, every running rollout is moved on when due.

Only the leader runs ``tick`` (``Controller._as_leader``). Everything a turn needs is in the state database, so a
new leader carries on where the old one stopped: a step decided but not applied (``step_started_at`` empty, or
the desired canary weight not the step's) is applied first; a rollout whose version became live, or whose canary
went away outside it (a guardrail, an operator), is closed as succeeded or superseded. Each turn of a rollout:

1. apply the step's weight when it is not applied yet (``canary``, gates included; audited ``rollout-step``);
2. when its interval has passed, observe the step's window and ``decide`` (``tritonops.control_plane.progressive``);
   every verdict is audited as ``rollout-analysis`` with the checks as evidence;
3. act: the next step, a retry or hold with a new or growing window, ``promote`` (gates included) after the last
   step, or ``abort_canary`` (the canary goes, live stays) after ``threshold`` failed checks.

A step that can't be applied now is tried again: at the next turn when the model's lock is held, after a pause
that doubles up to 30 s when it failed (an endpoint down, a gate refusing), so a long outage leaves few audit
events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tritonops.control_plane.controller.reconciler import ACTOR as RECONCILER
from tritonops.control_plane.desired import version_manifest
from tritonops.control_plane.errors import ControlPlaneError, RolloutInProgressError
from tritonops.control_plane.feedback import AccuracyComparison, FeedbackStore
from tritonops.control_plane.metrics import FleetWindow
from tritonops.control_plane.progressive import Decision, Observation, decide, observe
from tritonops.control_plane.progressive_runs import (
    Rollout,
    get_rollout,
    running_rollouts,
    update_rollout,
    with_lock_retry,
)
from tritonops.control_plane.rollout import abort_canary, canary, promote
from tritonops.control_plane.state import ModelState, StateStore
from tritonops.settings import Settings

_log = logging.getLogger("tritonops.controller.rollouts")
ACTOR = "controller/rollout"
MAX_BACKOFF_SECONDS = 30.0
"""Longest pause before trying a rollout's turn again after it failed (1, 2, 4, ... seconds up to this)."""


class RolloutDriver:
    """``tick()`` moves every running rollout on; ``on_action`` hears of every change of the desired state."""

    def __init__(
        self,
        settings: Settings,
        windows: Callable[[float | None], FleetWindow],
        *,
        actor: str = ACTOR,
        on_action: Callable[[str], None] = lambda reason: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.windows = windows
        self.actor = actor
        self.on_action = on_action
        self.clock = clock
        self._backoff: dict[int, tuple[int, float]] = {}
        """Rollout id -> (turns failed in a row, monotonic time of the next try)."""

    def tick(self) -> None:
        with StateStore.open(self.settings.state) as store:
            rollouts = running_rollouts(store)
        for rollout in rollouts:
            failed, retry_at = self._backoff.get(rollout.id, (0, 0.0))
            if time.monotonic() < retry_at:
                continue
            try:
                self._turn(rollout)
                self._backoff.pop(rollout.id, None)
            except RolloutInProgressError as exc:  # a reconcile or an operator holds the model: next turn
                if not exc.holder.startswith(f"reconcile by {RECONCILER}"):
                    _log.info(
                        "rollout %s of %s waits: %s", rollout.id, rollout.model, exc, extra={"model": rollout.model}
                    )
            except ControlPlaneError as exc:  # an endpoint down, a gate refusing: back off (each try is audited)
                pause = min(2.0**failed, MAX_BACKOFF_SECONDS)
                self._backoff[rollout.id] = (failed + 1, time.monotonic() + pause)
                _log.warning("rollout %s of %s: turn failed, tried again in %g s: %s", rollout.id, rollout.model,
                             pause, exc, extra={"model": rollout.model})  # fmt: skip

    # -- one rollout --------------------------------------------------------------------------------------------
    def _turn(self, rollout: Rollout) -> None:
        with StateStore.open(self.settings.state) as store:
            state = store.model(rollout.model)
        if state is None or state.live == rollout.version:
            self._finish(rollout, "succeeded", f"version {rollout.version} is live", "rollout-end")
            return
        if state.canary != rollout.version:
            self._finish(
                rollout,
                "superseded",
                f"the canary of version {rollout.version} was removed outside the rollout (canary now "
                f"{state.canary}); live stays {state.live}",
                "rollout-end",
            )
            return
        if rollout.step_started_at is None or abs(state.canary_weight - rollout.weight) > 1e-9:
            self._apply_step(rollout)
            return
        now = self.clock()
        if now < rollout.next_check_at:
            return
        observation = self._observe(rollout, state, now)
        decision = decide(rollout.spec, rollout.progress, observation, now)
        self._act(rollout, decision, observation, now)

    def _observe(self, rollout: Rollout, state: ModelState, now: float) -> Observation:
        fleet = self.windows(max(now - rollout.window_started_at, 0.5))
        analysis = rollout.analysis
        manifest = version_manifest(self.settings.repository, rollout.model, rollout.version)
        accuracy: AccuracyComparison | None = None
        guard = analysis.canary
        if guard is not None and guard.accuracy_alpha is not None and state.live is not None:
            with FeedbackStore(self.settings.state) as feedback:
                accuracy = feedback.compare_accuracy(rollout.model, state.live, rollout.version, guard.min_labels)
        return observe(analysis, state, rollout.version, fleet, manifest, accuracy)

    def _apply_step(self, rollout: Rollout) -> None:
        if not self._still_running(rollout):
            return
        label = f"progressive rollout {rollout.id}: step {rollout.step + 1}/{len(rollout.steps)}"
        canary(self.settings, rollout.model, rollout.version, rollout.weight, actor=self.actor, reason=label)
        self.on_action(f"rollout step of {rollout.model}")
        now = self.clock()
        applied = self._update(
            rollout,
            action="rollout-step",
            reason=f"{label} at weight {rollout.weight:g}",
            evidence={"step": rollout.step + 1, "weight": rollout.weight},
            log={"event": "step", "step": rollout.step + 1, "weight": rollout.weight},
            step_started_at=now,
            window_started_at=now,
            next_check_at=now + rollout.interval_seconds,
        )
        _log.info("%s of %s at weight %g", label, rollout.model, rollout.weight, extra={"model": rollout.model})
        if applied is None:  # paused or aborted while the weight was being applied
            self._after_stop(rollout)

    def _act(self, rollout: Rollout, decision: Decision, observation: Observation, now: float) -> None:
        result = {"passed": "ok", "inconclusive": "ok", "failed": "failed"}[decision.verdict or "inconclusive"]
        entry = {
            "event": "analysis",
            "step": rollout.step + 1,
            "weight": rollout.weight,
            "verdict": decision.verdict,
            "decision": decision.kind,
            "window_started_at": rollout.window_started_at,
            "canary_requests": observation.canary_requests,
            "canary_errors": observation.canary_errors,
            "failed": [c.guardrail for c in decision.failed],
        }
        changes: dict[str, object] = {"failed_checks": decision.failed_checks}
        if decision.kind == "advance":
            changes.update(step=rollout.step + 1, step_started_at=None)
        elif decision.kind == "retry":
            changes.update(window_started_at=now, next_check_at=now + rollout.interval_seconds)
        elif decision.kind == "hold":
            changes.update(next_check_at=now + rollout.interval_seconds)
        elif decision.kind == "rollback":
            changes.update(status="rolled-back", outcome=decision.reason)
        updated = self._update(
            rollout,
            action="rollout-analysis",
            reason=decision.reason,
            result=result,
            evidence={"decision": decision.kind, "verdict": decision.verdict, **observation.evidence()},
            log=entry,
            **changes,
        )
        log = _log.warning if decision.verdict != "passed" else _log.info
        log("rollout %s of %s: %s", rollout.id, rollout.model, decision.reason, extra={"model": rollout.model})
        if updated is None:
            self._after_stop(rollout)
        elif decision.kind == "advance":
            self._apply_step(updated)
        elif decision.kind == "rollback":
            self._remove_canary(rollout, f"progressive rollout {rollout.id} rolled back: {decision.reason}")
        elif decision.kind == "promote":
            self._promote(updated, decision)

    def _promote(self, rollout: Rollout, decision: Decision) -> None:
        try:
            with_lock_retry(
                lambda: promote(
                    self.settings,
                    rollout.model,
                    rollout.version,
                    actor=self.actor,
                    reason=f"progressive rollout {rollout.id}: {decision.reason}",
                )
            )
        except ControlPlaneError as exc:
            self._finish(rollout, "failed", f"promotion refused: {exc}; the canary is removed", "rollout-end", "failed")
            self._remove_canary(rollout, f"progressive rollout {rollout.id}: promotion refused")
            return
        self.on_action(f"rollout promote of {rollout.model}")
        self._finish(rollout, "succeeded", f"version {rollout.version} promoted after {len(rollout.steps)} steps",
                     "rollout-end")  # fmt: skip

    def _remove_canary(self, rollout: Rollout, reason: str) -> None:
        with StateStore.open(self.settings.state) as store:
            state = store.model(rollout.model)
        if state is None or state.canary != rollout.version:
            return
        with_lock_retry(lambda: abort_canary(self.settings, rollout.model, actor=self.actor, reason=reason))
        self.on_action(f"rollout rollback of {rollout.model}")

    def _after_stop(self, rollout: Rollout) -> None:
        """The rollout was paused or ended while this turn acted: an ended one must not leave its canary."""
        with StateStore.open(self.settings.state) as store:
            current = get_rollout(store, rollout.id)
        if not current.active:
            self._remove_canary(rollout, f"progressive rollout {rollout.id} {current.status}")

    def _still_running(self, rollout: Rollout) -> bool:
        with StateStore.open(self.settings.state) as store:
            return get_rollout(store, rollout.id).status == "running"

    def _finish(self, rollout: Rollout, status: str, outcome: str, action: str, result: str = "ok") -> None:
        self._update(
            rollout,
            action=action,
            reason=outcome,
            result=result,
            evidence={"status": status},
            log={"event": "end", "status": status, "step": rollout.step + 1},
            expect=("running",),
            status=status,
            outcome=outcome,
        )
        _log.info("rollout %s of %s %s: %s", rollout.id, rollout.model, status, outcome, extra={"model": rollout.model})

    def _update(self, rollout: Rollout, **kwargs: Any) -> Rollout | None:
        with StateStore.open(self.settings.state) as store:
            return update_rollout(store, rollout, actor=self.actor, **kwargs)
