"""Guardrails: a policy (YAML or TOML), checks over a window of Triton metrics, and the ``Watcher`` that acts.

Each step the watcher reads the desired state (live, canary), scrapes every metrics endpoint (one failing endpoint
is reported and skipped), and checks, per served version: error rate, p99 latency, drift of the class mix and of
the inputs, and for a canary its error rate, latency and accuracy against live. A check only counts with enough
traffic in the window (``min_requests``), and a guardrail acts only after ``consecutive`` breached steps in a row,
so one slow request or one noisy window does not roll anything back. Acting means the rollout library's
``abort_canary`` (a breaching canary) or ``rollback`` (a breaching live version), after an audit event that holds
the evidence. A due breach the policy does not act on (``alert``, or a live breach under ``abort-canary``) is
recorded once per run of breaches as a ``guardrail-alert`` audit event with the same evidence.

    interval_seconds: 15       # one step every 15 s
    window_seconds: 300        # counters compared with the snapshot 5 min ago
    min_requests: 100          # fewer requests in the window: no verdict
    consecutive: 2             # breaches in a row before acting
    action: auto               # auto | rollback | abort-canary | alert
    error_rate: {max: 0.05}
    latency: {p99_ms: 50}
    drift: {on_prediction_drift: true, on_dataset_drift: false, thresholds: {default: {method: psi}}}
    canary: {max_error_rate_increase: 0.02, max_p99_ratio: 2.0, accuracy_alpha: 0.05, min_labels: 50}
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tritonops.contract.manifest import Manifest
from tritonops.contract.names import canary_alias
from tritonops.control_plane.desired import version_manifest
from tritonops.control_plane.drift import DriftConfig, DriftReport, drift_report, references_from_manifest
from tritonops.control_plane.errors import ControlPlaneError, PolicyError, UnknownModelError
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.feedback import AccuracyComparison, FeedbackStore
from tritonops.control_plane.metrics import (
    FleetWindow,
    History,
    MemoryHistory,
    VersionStats,
    feature_bin_counts,
    fleet_window,
    prediction_counts,
    rows_scored,
)
from tritonops.control_plane.rollout import abort_canary, rollback
from tritonops.control_plane.state import AuditEntry, ModelState, StateStore
from tritonops.settings import Settings

Target = Literal["live", "canary"]


class Action(StrEnum):
    """What a breach of an enforced guardrail does."""

    AUTO = "auto"  # canary breach -> abort the canary; live breach -> roll back
    ROLLBACK = "rollback"  # any breach -> roll back (which also ends a canary)
    ABORT_CANARY = "abort-canary"  # canary breach -> abort; live breach -> alert only
    ALERT = "alert"  # record and export, never act


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorRateGuard(_Strict):
    max: float = Field(default=0.05, gt=0, le=1)


class LatencyGuard(_Strict):
    p99_ms: float = Field(gt=0)


class DriftGuard(_Strict):
    thresholds: DriftConfig = DriftConfig()
    on_prediction_drift: bool = True
    on_dataset_drift: bool = False


class CanaryGuard(_Strict):
    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    max_p99_ratio: float | None = Field(default=2.0, gt=1)
    accuracy_alpha: float | None = Field(default=0.05, gt=0, lt=1)
    min_labels: int = Field(default=50, ge=1)


class AlertAction(StrEnum):
    """What the controller does with a firing Prometheus alert of the model (``alerts:`` in the policy)."""

    ROLLBACK = "rollback"
    ABORT_CANARY = "abort-canary"
    RETRAIN = "retrain"  # call the webhooks with an `alert` trigger
    RECORD = "record"  # the audit event only (every alert gets one)


class Policy(_Strict):
    """Guardrails for one model; every field has a default, so an empty file is a valid policy."""

    interval_seconds: float = Field(default=15.0, gt=0)
    window_seconds: float = Field(default=300.0, gt=0)
    min_requests: int = Field(default=100, ge=1)
    consecutive: int = Field(default=2, ge=1)
    action: Action = Action.AUTO
    error_rate: ErrorRateGuard | None = ErrorRateGuard()
    latency: LatencyGuard | None = None
    drift: DriftGuard | None = DriftGuard()
    canary: CanaryGuard | None = CanaryGuard()
    alerts: dict[str, AlertAction] = Field(default_factory=dict)
    """Prometheus alert name -> what a firing alert of this model does (default: record it)."""


def parse_policy(text: str, fmt: Literal["yaml", "toml"], source: str = "<text>") -> Policy:
    """A policy from YAML or TOML text; ``PolicyError`` naming the first bad field otherwise."""
    try:
        data = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(source, f"not valid {fmt.upper()} ({exc})") from exc
    return parse_policy_data({} if data is None else data, source)


def parse_policy_data(data: object, source: str = "<data>") -> Policy:
    """A policy from parsed data (a mapping, e.g. a JSON body); ``PolicyError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise PolicyError(source, f"expected a mapping of settings at the top, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise PolicyError(source, f"field {where}: {first['msg']} (got {first.get('input')!r})") from exc


def load_policy(path: Path) -> Policy:
    """Read a ``.yaml``/``.yml`` or ``.toml`` policy file."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise PolicyError(str(path), f"expected a .yaml, .yml or .toml file, got {suffix or 'no extension'!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), f"cannot read it ({exc.strerror})") from exc
    return parse_policy(text, "toml" if suffix == ".toml" else "yaml", str(path))


# -- drift of one version over a fleet window -------------------------------------------------------------------


def drift_for_version(
    manifest: Manifest, fleet: FleetWindow, config: DriftConfig, notes: Sequence[str] = ()
) -> DriftReport:
    """The drift report of ``manifest``'s version from the fleet's counter increases."""
    delta = fleet.delta
    return drift_report(
        manifest.name,
        manifest.version,
        references_from_manifest(manifest),
        feature_bin_counts(delta, manifest.name, manifest.version),
        prediction_counts(delta, manifest.name, manifest.version),
        config,
        fleet.seconds,
        rows=rows_scored(delta, manifest.name, manifest.version),
        notes=[*fleet.notes, *(f"{url}: {why}" for url, why in fleet.failures.items()), *notes],
    )


def measure_drift(
    settings: Settings,
    model: str,
    metrics_urls: Sequence[str],
    *,
    version: int | None = None,
    window_seconds: float | None = None,
    config: DriftConfig | None = None,
    history: History | None = None,
) -> DriftReport:
    """Drift of ``model``'s live version (or ``version``) over the last ``window_seconds`` across the fleet."""
    if version is None:
        with StateStore.open(settings.state, create=False) as store:
            state = store.model(model)
        if state is None or state.live is None:
            raise UnknownModelError(model, f"the control plane state ({settings.state}) as a live model")
        version = state.live
    manifest = version_manifest(settings.repository, model, version)
    fleet = fleet_window(metrics_urls, window_seconds, history)
    if not fleet.windows:
        failures = "; ".join(fleet.failures.values())
        raise ControlPlaneError(f"drift of {model!r}: no metrics endpoint could be scraped ({failures})")
    return drift_for_version(manifest, fleet, config or DriftConfig())


# -- checks -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One guardrail on one served version in one step."""

    guardrail: str
    target: Target
    version: int
    value: float | None
    limit: float
    breached: bool
    enough_data: bool
    enforce: bool
    detail: str

    def evidence(self) -> dict[str, object]:
        return dict(self.__dict__)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _stats_for(stats: Mapping[tuple[str, str], VersionStats], name: str, version: int) -> VersionStats | None:
    return stats.get((name, str(version)))


def _serving_checks(policy: Policy, target: Target, version: int, s: VersionStats | None) -> list[Check]:
    checks = []
    requests = s.requests if s else 0.0
    enough = requests >= policy.min_requests
    if policy.error_rate is not None:
        rate = s.error_rate if s else None
        limit = policy.error_rate.max
        checks.append(
            Check(
                "error_rate",
                target,
                version,
                rate,
                limit,
                enough and rate is not None and rate > limit,
                enough,
                True,
                f"{(s.errors if s else 0):.0f} errors in {requests:.0f} requests",
            )
        )
    if policy.latency is not None:
        p99 = s.p99_ms if s else None
        limit = policy.latency.p99_ms
        checks.append(
            Check(
                "latency_p99",
                target,
                version,
                p99,
                limit,
                enough and p99 is not None and p99 > limit,
                enough,
                True,
                f"p99 {p99 if p99 is not None else float('nan'):.2f} ms ({s.latency_source if s else 'none'})",
            )
        )
    return checks


def _drift_checks(policy: Policy, target: Target, report: DriftReport | None) -> list[Check]:
    if policy.drift is None or report is None:
        return []
    checks = []
    if report.prediction is not None:
        p = report.prediction
        checks.append(
            Check(
                "prediction_drift",
                target,
                report.version,
                p.score,
                p.threshold,
                p.drifted,
                p.enough_data,
                policy.drift.on_prediction_drift,
                f"class mix {p.method.value} over {p.live_rows:.0f} rows",
            )
        )
    checks.append(
        Check(
            "dataset_drift",
            target,
            report.version,
            report.drifted_share,
            report.drift_share,
            report.dataset_drift,
            report.enough_data,
            policy.drift.on_dataset_drift,
            f"drifted features: {', '.join(report.drifted_features) or 'none'}",
        )
    )
    return checks


def _canary_checks(
    policy: Policy,
    version: int,
    live: VersionStats | None,
    canary: VersionStats | None,
    accuracy: AccuracyComparison | None,
) -> list[Check]:
    guard = policy.canary
    if guard is None:
        return []
    checks = []
    enough = bool(live and canary and min(live.requests, canary.requests) >= policy.min_requests)
    if live and canary and live.error_rate is not None and canary.error_rate is not None:
        increase = canary.error_rate - live.error_rate
        checks.append(
            Check(
                "canary_error_rate",
                "canary",
                version,
                increase,
                guard.max_error_rate_increase,
                enough and increase > guard.max_error_rate_increase,
                enough,
                True,
                f"canary {canary.error_rate:.4f} vs live {live.error_rate:.4f}",
            )
        )
    if guard.max_p99_ratio is not None and live and canary and live.p99_ms and canary.p99_ms is not None:
        ratio = canary.p99_ms / live.p99_ms
        checks.append(
            Check(
                "canary_latency",
                "canary",
                version,
                ratio,
                guard.max_p99_ratio,
                enough and ratio > guard.max_p99_ratio,
                enough,
                True,
                f"canary p99 {canary.p99_ms:.2f} ms vs live {live.p99_ms:.2f} ms",
            )
        )
    if guard.accuracy_alpha is not None and accuracy is not None:
        worse = accuracy.canary_worse(guard.accuracy_alpha)
        checks.append(
            Check(
                "canary_accuracy",
                "canary",
                version,
                accuracy.p_value_worse,
                guard.accuracy_alpha,
                worse,
                accuracy.enough_labels,
                True,
                f"accuracy canary {accuracy.canary.accuracy} ({accuracy.canary.labelled} labels) vs live "
                f"{accuracy.live.accuracy} ({accuracy.live.labelled} labels)",
            )
        )
    return checks


def evaluate(
    policy: Policy,
    state: ModelState,
    stats: Mapping[tuple[str, str], VersionStats],
    drift: Mapping[Target, DriftReport],
    accuracy: AccuracyComparison | None = None,
) -> list[Check]:
    """Every guardrail for the live version and, when one runs, the canary. Pure: no I/O."""
    checks: list[Check] = []
    live = _stats_for(stats, state.name, state.live) if state.live is not None else None
    if state.live is not None:
        checks += _serving_checks(policy, "live", state.live, live)
        checks += _drift_checks(policy, "live", drift.get("live"))
    if state.canary is not None:
        canary = _stats_for(stats, canary_alias(state.name), state.canary)
        checks += _serving_checks(policy, "canary", state.canary, canary)
        checks += _drift_checks(policy, "canary", drift.get("canary"))
        checks += _canary_checks(policy, state.canary, live, canary, accuracy)
    return checks


# -- the watcher ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What one watcher step saw and did."""

    at: float
    state: ModelState
    checks: tuple[Check, ...]
    streaks: Mapping[str, int]
    scrape_failures: Mapping[str, str]
    notes: tuple[str, ...] = ()
    action: str | None = None  # "rollback" | "abort-canary" when one was taken
    action_detail: str = ""
    action_error: str | None = None
    drift: Mapping[Target, DriftReport] = field(default_factory=dict)
    alerts: tuple[Check, ...] = ()  # due breaches recorded without an action (first step of each run)


def _key(check: Check) -> str:
    return f"{check.target}:{check.guardrail}"


class Watcher:
    """Runs the policy against one model: ``step()`` once, or ``run()`` until stopped."""

    def __init__(
        self,
        settings: Settings,
        model: str,
        policy: Policy,
        metrics_urls: Sequence[str],
        *,
        actor: str = "tritonops-watch",
        exporter: ControlPlaneExporter | None = None,
        history: History | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        windows: Callable[[float | None], FleetWindow] | None = None,
    ) -> None:
        if not metrics_urls and windows is None:
            raise PolicyError("metrics endpoints", "expected at least one Triton /metrics URL to watch, got none")
        self.settings = settings
        self.model = model
        self.policy = policy
        self.metrics_urls = tuple(metrics_urls)
        self.actor = actor
        self.exporter = exporter
        self.history: History = history if history is not None else MemoryHistory(policy.window_seconds * 3)
        self._clock = clock
        self._sleep = sleep
        self._windows = windows
        self._streaks: dict[str, int] = {}
        self._manifests: dict[int, Manifest] = {}
        self.actions = 0

    def _manifest(self, version: int) -> Manifest:
        if version not in self._manifests:
            self._manifests[version] = version_manifest(self.settings.repository, self.model, version)
        return self._manifests[version]

    def _state(self) -> ModelState:
        with StateStore.open(self.settings.state) as store:
            state = store.model(self.model)
        if state is None or state.live is None:
            raise UnknownModelError(self.model, f"the control plane state ({self.settings.state}) as live")
        return state

    def _accuracy(self, state: ModelState) -> AccuracyComparison | None:
        guard = self.policy.canary
        if guard is None or guard.accuracy_alpha is None or state.canary is None or state.live is None:
            return None
        with FeedbackStore(self.settings.state) as store:
            return store.compare_accuracy(self.model, state.live, state.canary, guard.min_labels)

    def step(self) -> Step:
        """Scrape, check, and act when a guardrail has been breached ``consecutive`` times in a row."""
        state = self._state()
        if self._windows is not None:
            fleet = self._windows(self.policy.window_seconds)
        else:
            fleet = fleet_window(self.metrics_urls, self.policy.window_seconds, self.history)
        drift: dict[Target, DriftReport] = {}
        if self.policy.drift is not None and fleet.windows:
            versions: dict[Target, int | None] = {"live": state.live, "canary": state.canary}
            for target, version in versions.items():
                if version is not None:
                    drift[target] = drift_for_version(self._manifest(version), fleet, self.policy.drift.thresholds)
        checks = evaluate(self.policy, state, fleet.stats, drift, self._accuracy(state)) if fleet.windows else []
        for check in checks:
            key = _key(check)
            self._streaks[key] = self._streaks.get(key, 0) + 1 if check.breached else 0
        due = [c for c in checks if c.enforce and self._streaks[_key(c)] >= self.policy.consecutive]
        step = Step(
            at=self._clock(),
            state=state,
            checks=tuple(checks),
            streaks=dict(self._streaks),
            scrape_failures=dict(fleet.failures),
            notes=fleet.notes,
            drift=drift,
        )
        decision = self._decide(state, due)
        acted_on = [c for c in due if decision == "rollback" or (decision is not None and c.target == "canary")]
        alerts = [c for c in due if c not in acted_on and self._streaks[_key(c)] == self.policy.consecutive]
        if alerts:
            self._record("guardrail-alert", alerts[0].version, alerts, step.scrape_failures)
            step = replace(step, alerts=tuple(alerts))
        if decision is not None:
            step = self._act(step, decision, acted_on)
        if self.exporter is not None:
            self._export(step)
        return step

    def _export(self, step: Step) -> None:
        assert self.exporter is not None
        if step.action is None:
            self.exporter.set_state(step.state)
        for report in step.drift.values():
            self.exporter.set_drift(report)
        breached: dict[str, bool] = {}
        for check in step.checks:
            breached[check.guardrail] = breached.get(check.guardrail, False) or check.breached
        for guardrail, value in breached.items():
            self.exporter.set_guardrail(self.model, guardrail, value)

    def _decide(self, state: ModelState, due: Sequence[Check]) -> str | None:
        action = self.policy.action
        if not due or action is Action.ALERT:
            return None
        live_breach = any(c.target == "live" for c in due)
        canary_breach = any(c.target == "canary" for c in due)
        if action is Action.ROLLBACK:
            return "rollback"
        if canary_breach and state.canary is not None:
            return "abort-canary"
        if live_breach and action is Action.AUTO:
            return "rollback"
        return None

    def _record(
        self, event: str, version: int | None, causes: Sequence[Check], scrape_failures: Mapping[str, str]
    ) -> str:
        """Audit ``causes`` (with their evidence as JSON) as ``event`` about ``version``; returns the reason."""
        summary = "; ".join(
            f"{c.target} v{c.version} {c.guardrail} {_number(c.value)} (limit {c.limit:.4g}; {c.detail}; "
            f"{self._streaks[_key(c)]} steps in a row)"
            for c in causes
        )
        reason = f"guardrail breach: {summary}"
        if event == "guardrail-alert":
            reason += f" (policy action {self.policy.action.value}: recorded, no action)"
        evidence = {
            "checks": [c.evidence() for c in causes],
            "window_seconds": self.policy.window_seconds,
            "scrape_failures": dict(scrape_failures),
        }
        with StateStore.open(self.settings.state) as store:
            store.record(
                AuditEntry(
                    actor=self.actor,
                    action=event,
                    model=self.model,
                    from_version=version,
                    to_version=None,
                    reason=reason,
                    result="ok",
                    detail=json.dumps(evidence, default=str, sort_keys=True),
                )
            )
        return reason

    def _act(self, step: Step, action: str, causes: Sequence[Check]) -> Step:
        state = step.state
        acted_on = state.live if action == "rollback" else state.canary
        reason = self._record("guardrail-breach", acted_on, causes, step.scrape_failures)
        error = None
        detail = ""
        try:
            if action == "rollback":
                result = rollback(self.settings, self.model, actor=self.actor, reason=reason)
            else:
                result = abort_canary(self.settings, self.model, actor=self.actor, reason=reason)
            detail = result.detail
        except ControlPlaneError as exc:
            error = exc.describe()
        self._streaks.clear()
        self.actions += 1
        if self.exporter is not None and error is None:
            self.exporter.record_action(self.model, action, self._clock())
            self.exporter.set_state(self._state())
        return replace(step, action=action, action_detail=detail or reason, action_error=error)

    def run(
        self,
        iterations: int | None = None,
        *,
        stop_after_action: bool = False,
        on_step: Callable[[Step], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RunSummary:
        """Step every ``interval_seconds`` (``iterations`` times, or until ``should_stop``).

        Each step goes to ``on_step`` and is not kept (memory stays flat however long it runs); the summary holds
        the counts and the last step.
        """
        steps = actions = 0
        last: Step | None = None
        while iterations is None or steps < iterations:
            started = self._clock()
            last = self.step()
            steps += 1
            actions += last.action is not None
            if on_step is not None:
                on_step(last)
            if (stop_after_action and last.action is not None) or should_stop():
                break
            if iterations is not None and steps >= iterations:
                break
            self._sleep(max(self.policy.interval_seconds - (self._clock() - started), 0.0))
        return RunSummary(steps, actions, last)


@dataclass(frozen=True)
class RunSummary:
    """What ``Watcher.run`` did: how many steps, how many acted, and the last step."""

    steps: int
    actions: int
    last: Step | None
