"""Guardrails for every model that has a policy (its own, or the default), each model independent.

One ``Watcher`` per model, built from the policy stored in the state and rebuilt when that policy changes; all
read their windows from the controller's shared ``WindowSource``: the ``FleetSampler`` (one scrape per endpoint
for every model, compact counter samples as history) or, with a Prometheus URL, ``PrometheusWindows``. A failing
step of one model is logged and never touches another. Steps are handed on, never kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tritonops.control_plane.errors import ControlPlaneError
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.guardrails import Policy, Step, Watcher
from tritonops.control_plane.metrics import FleetWindow, SnapshotStore
from tritonops.control_plane.policies import effective_policy
from tritonops.control_plane.state import StateStore
from tritonops.settings import Settings

_log = logging.getLogger("tritonops.controller.guardrails")
ACTOR = "controller/guardrails"


@dataclass
class _Guarded:
    policy_json: str
    source: str
    watcher: Watcher
    next_at: float = 0.0
    failures: int = 0


class Guardrails:
    """``tick()`` syncs the watchers with the state and steps every model whose interval is due."""

    def __init__(
        self,
        settings: Settings,
        windows: Callable[[float | None], FleetWindow],
        exporter: ControlPlaneExporter,
        *,
        history: SnapshotStore | None = None,
        actor: str = ACTOR,
        on_action: Callable[[str], None] = lambda reason: None,
        on_step: Callable[[Step], None] = lambda step: None,
    ) -> None:
        self.settings = settings
        self.windows = windows
        self.exporter = exporter
        self.history = history
        self.actor = actor
        self.on_action = on_action
        self.on_step = on_step
        self._guarded: dict[str, _Guarded] = {}

    @property
    def models(self) -> dict[str, str]:
        """Guarded models and where their policy comes from (``model`` or ``default``)."""
        return {name: g.source for name, g in self._guarded.items()}

    def sync(self) -> None:
        """Watchers for exactly the models with a live version and a policy; rebuilt when a policy changes."""
        wanted: dict[str, tuple[Policy, str]] = {}
        with StateStore.open(self.settings.state) as store:
            for state in store.models():
                self.exporter.set_state(state)
                if state.live is None:
                    continue
                found = effective_policy(store, state.name)
                if found is not None:
                    wanted[state.name] = found
        for name in [n for n in self._guarded if n not in wanted]:
            _log.info("guardrails of %s stopped (no policy or no live version)", name, extra={"model": name})
            del self._guarded[name]
        for name, (policy, source) in wanted.items():
            body = policy.model_dump_json()
            current = self._guarded.get(name)
            if current is not None and current.policy_json == body:
                continue
            watcher = Watcher(
                self.settings, name, policy, [], actor=self.actor, exporter=self.exporter, windows=self.windows
            )
            self._guarded[name] = _Guarded(body, source, watcher)
            _log.info(
                "guarding %s (%s policy: every %g s, window %g s, action %s)",
                name,
                source,
                policy.interval_seconds,
                policy.window_seconds,
                policy.action.value,
                extra={"model": name},
            )
        self._size_history([g.watcher.policy for g in self._guarded.values()])

    def _size_history(self, policies: list[Policy]) -> None:
        """Keep only what the longest window needs; sample often enough for the shortest."""
        if self.history is None or not policies:
            return
        self.history.keep_seconds = max(p.window_seconds for p in policies) * 1.25 + 60.0
        self.history.min_spacing = max(1.0, min(p.window_seconds for p in policies) / 10.0)

    def tick(self) -> None:
        self.sync()
        now = time.monotonic()
        for name, guarded in list(self._guarded.items()):
            if guarded.next_at > now:
                continue
            guarded.next_at = now + guarded.watcher.policy.interval_seconds
            try:
                step = guarded.watcher.step()
            except ControlPlaneError as exc:
                guarded.failures += 1
                _log.warning("guardrails of %s: step failed: %s", name, exc, extra={"model": name})
                continue
            guarded.failures = 0
            self._report(name, step)

    def _report(self, model: str, step: Step) -> None:
        for check in step.alerts:
            _log.warning(
                "guardrail alert %s v%s: %s %s (limit %s), no action by policy",
                model,
                check.version,
                check.target,
                check.guardrail,
                check.limit,
                extra={"model": model, "version": check.version, "actor": self.actor, "action": "guardrail-alert"},
            )
        if step.action is not None:
            version = step.state.live if step.action == "rollback" else step.state.canary
            if step.action_error is None:
                _log.warning(
                    "guardrail %s of %s v%s: %s",
                    step.action,
                    model,
                    version,
                    step.action_detail,
                    extra={"model": model, "version": version, "actor": self.actor, "action": step.action},
                )
            else:
                _log.error(
                    "guardrail %s of %s v%s failed: %s",
                    step.action,
                    model,
                    version,
                    step.action_error,
                    extra={"model": model, "version": version, "actor": self.actor, "action": step.action},
                )
            self.on_action(f"guardrail {step.action} of {model}")
        self.on_step(step)
