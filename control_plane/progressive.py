"""Progressive rollouts: the spec (steps, interval, analysis), one step's analysis, and the pure decision.

A rollout of ``version`` raises its canary weight step by step (``steps``, percentages, strictly increasing, in
(0, 100]). Each step runs for ``interval`` seconds; then its window (from the step's start, or from the last failed
check) is analysed with the guardrail checks of ``tritonops.control_plane.guardrails`` on the canary: error rate,
p99, drift, error rate and p99 against live, accuracy against live once labels arrive, and optionally the shadow
agreement of the version. ``decide`` turns the step's progress and what was observed into one decision:

- **passed** (enough requests, no enforced check breached): the next step, or after the last one the promotion;
- **failed** (an enforced check with enough data breached): one failed check; ``threshold`` failed checks over the
  rollout roll it back (the canary goes, live stays), fewer retry the step with a fresh window;
- **inconclusive** (fewer than ``min_requests`` canary requests in the window): ``no_data: hold`` waits another
  interval with the window still growing; ``no_data: fail`` (the default) holds through a grace period
  (``no_data_grace_seconds``, default one interval) and then counts as a failed check.

``decide`` does no I/O: the controller (``tritonops.control_plane.controller.rollouts``) observes and acts.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tritonops.contract.manifest import Manifest
from tritonops.contract.names import canary_alias
from tritonops.control_plane.drift import DriftReport
from tritonops.control_plane.errors import PolicyError, RolloutSpecError
from tritonops.control_plane.feedback import AccuracyComparison
from tritonops.control_plane.guardrails import (
    Action,
    CanaryGuard,
    Check,
    DriftGuard,
    ErrorRateGuard,
    LatencyGuard,
    Policy,
    Target,
    drift_for_version,
    evaluate,
)
from tritonops.control_plane.metrics import FleetWindow
from tritonops.control_plane.shadow import shadow_reports
from tritonops.control_plane.state import ModelState

MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 86_400.0
MAX_STEPS = 20
_DURATION = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class NoData(StrEnum):
    """What a step whose window has too few canary requests counts as."""

    HOLD = "hold"  # inconclusive: wait another interval, however long it takes
    FAIL = "fail"  # inconclusive through the grace period, then a failed check


class Analysis(BaseModel):
    """What each step's window must show; every field has a default, so an empty file is a valid analysis.

    The checks (``error_rate``, ``latency``, ``drift``, ``canary``) are the guardrail policy's own sections.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: int = Field(default=1, ge=1)
    """Failed checks over the rollout that roll it back."""
    min_requests: int = Field(default=100, ge=1)
    """Canary requests a step's window needs for a verdict."""
    no_data: NoData = NoData.FAIL
    no_data_grace_seconds: float | None = Field(default=None, ge=0)
    """How long past the interval a step may stay without data before it fails (``no_data: fail``); None: one
    interval."""
    error_rate: ErrorRateGuard | None = ErrorRateGuard()
    latency: LatencyGuard | None = None
    drift: DriftGuard | None = DriftGuard()
    canary: CanaryGuard | None = CanaryGuard()
    min_shadow_agreement: float | None = Field(default=None, gt=0, le=1)
    """When set, the version running as the model's shadow must agree with live on this share of the rows
    compared in the window."""

    def policy(self) -> Policy:
        """The guardrail policy that evaluates a window: the same checks, a verdict from one window."""
        return Policy(
            min_requests=self.min_requests,
            consecutive=1,
            action=Action.ALERT,
            error_rate=self.error_rate,
            latency=self.latency,
            drift=self.drift,
            canary=self.canary,
        )

    def grace_seconds(self, interval: float) -> float:
        return interval if self.no_data_grace_seconds is None else self.no_data_grace_seconds


def parse_analysis_data(data: object, source: str = "<data>") -> Analysis:
    """An analysis from parsed data (None: the defaults); ``PolicyError`` naming the first bad field."""
    if data is None:
        return Analysis()
    if not isinstance(data, dict):
        raise PolicyError(source, f"expected a mapping of analysis settings at the top, got {type(data).__name__}")
    try:
        return Analysis.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise PolicyError(source, f"field {where}: {first['msg']} (got {first.get('input')!r})") from exc


def load_analysis(path: Path) -> Analysis:
    """Read a ``.yaml``/``.yml`` analysis file."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise PolicyError(str(path), f"expected a .yaml or .yml file, got {path.suffix or 'no extension'!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), f"cannot read it ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(str(path), f"not valid YAML ({exc})") from exc
    return parse_analysis_data(data, str(path))


def parse_steps(steps: str | Sequence[float]) -> tuple[float, ...]:
    """Canary weights in percent (``"5,25,50,100"`` or numbers): each in (0, 100], strictly increasing."""
    if isinstance(steps, str):
        parts = [p.strip() for p in steps.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError as exc:
            raise RolloutSpecError("steps", "comma-separated percentages such as 5,25,50,100", repr(steps)) from exc
    else:
        values = [float(v) for v in steps]
    if not values:
        raise RolloutSpecError("steps", "at least one percentage", "none")
    if len(values) > MAX_STEPS:
        raise RolloutSpecError("steps", f"at most {MAX_STEPS} steps", f"{len(values)}")
    for value in values:
        if not (math.isfinite(value) and 0.0 < value <= 100.0):
            raise RolloutSpecError("steps", "percentages in (0, 100]", f"{value:g}")
    for before, after in itertools.pairwise(values):
        if after <= before:
            raise RolloutSpecError("steps", "strictly increasing percentages", f"{after:g} after {before:g}")
    return tuple(values)


def parse_interval(interval: str | float) -> float:
    """Seconds of one step: a number of seconds or a duration such as ``60s``, ``2m``, ``1h``, ``500ms``."""
    if isinstance(interval, str):
        match = _DURATION.match(interval)
        if match is None:
            raise RolloutSpecError("interval", "a duration such as 60s, 2m or 1h", repr(interval))
        seconds = float(match["number"]) * _UNIT_SECONDS[match["unit"]]
    else:
        seconds = float(interval)
    if not (math.isfinite(seconds) and MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS):
        raise RolloutSpecError(
            "interval", f"between {MIN_INTERVAL_SECONDS:g} s and {MAX_INTERVAL_SECONDS:g} s", f"{seconds:g} s"
        )
    return seconds


@dataclass(frozen=True)
class RolloutSpec:
    """What to roll out and how: validated on creation (``RolloutSpecError`` naming the field)."""

    version: int
    steps: tuple[float, ...]
    interval_seconds: float
    analysis: Analysis = field(default_factory=Analysis)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise RolloutSpecError("version", "a version number >= 1", str(self.version))
        parse_steps(self.steps)
        parse_interval(self.interval_seconds)

    def weight(self, step: int) -> float:
        """The canary weight of ``step`` (0-based), in [0, 1]."""
        return self.steps[step] / 100.0


@dataclass(frozen=True)
class Progress:
    """Where a running rollout is: its step, when the step and its analysis window began, failed checks so far."""

    step: int
    step_started_at: float | None
    """Wall-clock time the step's weight was applied; None: decided, not applied yet."""
    window_started_at: float
    next_check_at: float
    failed_checks: int = 0


@dataclass(frozen=True)
class Observation:
    """One step's window: the canary's requests and the checks on the canary."""

    canary_requests: float
    checks: tuple[Check, ...]
    canary_errors: float = 0.0
    window_seconds: float | None = None
    notes: tuple[str, ...] = ()

    def breached(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.enforce and c.enough_data and c.breached)

    def evidence(self) -> dict[str, object]:
        return {
            "canary_requests": self.canary_requests,
            "canary_errors": self.canary_errors,
            "window_seconds": self.window_seconds,
            "checks": [c.evidence() for c in self.checks],
            "notes": list(self.notes),
        }


Kind = Literal["wait", "hold", "retry", "advance", "promote", "rollback"]
Verdict = Literal["passed", "failed", "inconclusive"]


@dataclass(frozen=True)
class Decision:
    """What to do now: ``kind``, the analysis ``verdict`` behind it, and the failed checks after it."""

    kind: Kind
    verdict: Verdict | None
    failed_checks: int
    reason: str
    failed: tuple[Check, ...] = ()


def _summary(checks: Sequence[Check]) -> str:
    return "; ".join(
        f"{c.guardrail} {'n/a' if c.value is None else f'{c.value:.4g}'} > {c.limit:.4g} ({c.detail})" for c in checks
    )


def decide(spec: RolloutSpec, progress: Progress, observation: Observation, now: float) -> Decision:
    """The decision for a rollout at ``now`` given its window's ``observation``. Pure."""
    analysis = spec.analysis
    if progress.step_started_at is None or now < progress.next_check_at:
        return Decision("wait", None, progress.failed_checks, "the step's interval has not passed")
    label = f"step {progress.step + 1}/{len(spec.steps)} ({spec.steps[progress.step]:g}%)"
    breached = observation.breached()
    if breached:
        verdict: Verdict = "failed"
        why = f"{label} failed: {_summary(breached)}"
    elif observation.canary_requests < analysis.min_requests:
        verdict = "inconclusive"
        why = (
            f"{label} inconclusive: {observation.canary_requests:.0f} canary requests in the window, "
            f"{analysis.min_requests} needed"
        )
        waited = now - progress.step_started_at
        deadline = spec.interval_seconds + analysis.grace_seconds(spec.interval_seconds)
        if analysis.no_data is NoData.HOLD or waited < deadline:
            return Decision("hold", verdict, progress.failed_checks, f"{why}; holding ({analysis.no_data.value})")
        why += f" for {waited:.1f} s (grace ends at {deadline:g} s): counted as a failed check"
    else:
        verdict = "passed"
        last = progress.step == len(spec.steps) - 1
        nxt = "promote" if last else f"step {progress.step + 2} ({spec.steps[progress.step + 1]:g}%)"
        return Decision(
            "promote" if last else "advance",
            verdict,
            progress.failed_checks,
            f"{label} passed ({observation.canary_requests:.0f} canary requests): {nxt}",
        )
    failed = progress.failed_checks + 1
    if failed >= analysis.threshold:
        return Decision("rollback", verdict, failed, f"{why}; {failed} of {analysis.threshold} failed checks", breached)
    return Decision("retry", verdict, failed, f"{why}; {failed} of {analysis.threshold} failed checks", breached)


# -- observing one step's window (reads only) -----------------------------------------------------------------


def _shadow_check(model: str, version: int, minimum: float, fleet: FleetWindow) -> Check:
    reports = [
        r
        for r in shadow_reports([w.delta for w in fleet.windows.values()], model)
        if r.shadow_version == str(version) and r.compared > 0
    ]
    best = max(reports, key=lambda r: r.compared, default=None)
    agreement = best.agreement if best is not None else None
    compared = best.compared if best is not None else 0.0
    return Check(
        "shadow_agreement",
        "canary",
        version,
        agreement,
        minimum,
        agreement is not None and agreement < minimum,
        best is not None,
        True,
        f"agreement with live over {compared:.0f} mirrored rows",
    )


def observe(
    analysis: Analysis,
    state: ModelState,
    version: int,
    fleet: FleetWindow,
    manifest: Manifest | None,
    accuracy: AccuracyComparison | None,
) -> Observation:
    """The canary's checks over ``fleet`` (one step's window): the guardrail checks, plus shadow agreement."""
    policy = analysis.policy()
    drift: dict[Target, DriftReport] = {}
    if policy.drift is not None and manifest is not None and fleet.windows:
        drift["canary"] = drift_for_version(manifest, fleet, policy.drift.thresholds)
    stats = fleet.stats
    checks = [c for c in evaluate(policy, state, stats, drift, accuracy) if c.target == "canary"]
    if analysis.min_shadow_agreement is not None:
        checks.append(_shadow_check(state.name, version, analysis.min_shadow_agreement, fleet))
    canary = stats.get((canary_alias(state.name), str(version)))
    notes = (*fleet.notes, *(f"{url}: {why}" for url, why in fleet.failures.items()))
    if canary is None:
        return Observation(0.0, tuple(checks), 0.0, fleet.seconds, notes)
    return Observation(canary.requests, tuple(checks), canary.errors, fleet.seconds, notes)


def spec_json(spec: RolloutSpec) -> Mapping[str, object]:
    return {
        "version": spec.version,
        "steps": list(spec.steps),
        "interval_seconds": spec.interval_seconds,
        "analysis": spec.analysis.model_dump(mode="json"),
    }
