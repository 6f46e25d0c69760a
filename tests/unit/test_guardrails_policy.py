"""Guardrail policy files and the pure checks over per-version numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonops.control_plane.drift import BinnedReference, DriftConfig, Method, drift_report
from tritonops.control_plane.errors import PolicyError
from tritonops.control_plane.feedback import AccuracyComparison, VersionAccuracy
from tritonops.control_plane.guardrails import Action, Check, Policy, evaluate, load_policy, parse_policy
from tritonops.control_plane.metrics import VersionStats
from tritonops.control_plane.state import ModelState

YAML = """
interval_seconds: 5
window_seconds: 60
min_requests: 20
consecutive: 3
action: abort-canary
error_rate: {max: 0.01}
latency: {p99_ms: 25}
drift:
  on_dataset_drift: true
  thresholds:
    default: {method: jensenshannon, threshold: 0.2}
    features: {age: {method: ks}}
    drift_share: 0.3
canary: {max_p99_ratio: 1.5, accuracy_alpha: null}
"""

TOML = """
window_seconds = 60
action = "alert"
[error_rate]
max = 0.02
[canary]
max_error_rate_increase = 0.0
"""


def test_yaml_and_toml_policies_parse_with_defaults_for_what_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(YAML)
    policy = load_policy(tmp_path / "p.yaml")
    assert (policy.interval_seconds, policy.window_seconds, policy.min_requests, policy.consecutive) == (5, 60, 20, 3)
    assert policy.action is Action.ABORT_CANARY
    assert policy.latency is not None and policy.latency.p99_ms == 25
    assert policy.drift is not None and policy.drift.on_dataset_drift and policy.drift.on_prediction_drift
    thresholds = policy.drift.thresholds
    assert thresholds.rule_for("age").method is Method.KS and thresholds.rule_for("age").effective_threshold() == 0.05
    assert thresholds.rule_for("other").effective_threshold() == 0.2 and thresholds.drift_share == 0.3
    assert policy.canary is not None and policy.canary.accuracy_alpha is None and policy.canary.max_p99_ratio == 1.5

    (tmp_path / "p.toml").write_text(TOML)
    toml = load_policy(tmp_path / "p.toml")
    assert toml.action is Action.ALERT and toml.error_rate is not None and toml.error_rate.max == 0.02
    assert toml.latency is None and toml.consecutive == 2 and toml.min_requests == 100
    assert parse_policy("", "yaml") == Policy()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("error_rate: {max: 2}", r"field error_rate.max: Input should be less than or equal to 1 \(got 2\)"),
        ("consecutive: 0", r"field consecutive: Input should be greater than or equal to 1"),
        ("action: explode", r"field action: Input should be 'auto', 'rollback', 'abort-canary' or 'alert'"),
        ("latency: {p95_ms: 3}", r"field latency.p99_ms: Field required"),
        ("windw_seconds: 3", r"field windw_seconds: Extra inputs are not permitted"),
        ("drift: {thresholds: {default: {method: wasserstein}}}", r"field drift.thresholds.default.method"),
        ("- a\n- b", r"expected a mapping of settings at the top, got list"),
        ("a: [", r"not valid YAML"),
    ],
)
def test_bad_policies_name_the_field_and_what_came(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(text, "yaml", "policy.yaml")


def test_policy_file_problems(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"expected a .yaml, .yml or .toml file, got '.json'"):
        load_policy(tmp_path / "p.json")
    with pytest.raises(PolicyError, match=r"missing.yaml: cannot read it"):
        load_policy(tmp_path / "missing.yaml")
    (tmp_path / "bad.toml").write_text("window_seconds = ")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(tmp_path / "bad.toml")


def _stats(model: str, version: int, success: float, errors: float, p99: float | None) -> VersionStats:
    return VersionStats(
        model=model,
        version=str(version),
        seconds=60.0,
        success=success,
        invalid=errors,
        latency_ms={0.99: p99} if p99 is not None else {},
        latency_source="triton summary",
    )


def _by_key(checks: list[Check]) -> dict[str, Check]:
    return {f"{c.target}:{c.guardrail}": c for c in checks}


def test_live_checks_need_enough_requests_before_they_can_breach() -> None:
    policy = Policy(min_requests=100, latency={"p99_ms": 10}, drift=None, canary=None)
    state = ModelState("rf", 2, None, 0.0)
    few = evaluate(policy, state, {("rf", "2"): _stats("rf", 2, 50, 25, 500.0)}, {})
    assert [(c.guardrail, c.breached, c.enough_data) for c in few] == [
        ("error_rate", False, False),
        ("latency_p99", False, False),
    ]
    many = _by_key(evaluate(policy, state, {("rf", "2"): _stats("rf", 2, 1000, 100, 12.5)}, {}))
    err, lat = many["live:error_rate"], many["live:latency_p99"]
    assert err.value == pytest.approx(0.1) and err.breached and err.limit == 0.05
    assert lat.value == 12.5 and lat.breached
    calm = evaluate(policy, state, {("rf", "2"): _stats("rf", 2, 1000, 10, 9.0)}, {})
    assert not any(c.breached for c in calm)


def test_canary_is_compared_with_live_under_its_alias() -> None:
    policy = Policy(min_requests=100, drift=None)
    state = ModelState("rf", 2, 3, 0.2)
    stats = {
        ("rf", "2"): _stats("rf", 2, 1000, 5, 4.0),
        ("rf__canary", "3"): _stats("rf__canary", 3, 300, 12, 10.0),
    }
    accuracy = AccuracyComparison(
        VersionAccuracy("rf", 2, 500, 400, 360), VersionAccuracy("rf", 3, 200, 100, 70), -4.2, 1e-5, 2e-5, 50
    )
    checks = _by_key(evaluate(policy, state, stats, {}, accuracy))
    assert set(checks) == {
        "live:error_rate",
        "canary:error_rate",
        "canary:canary_error_rate",
        "canary:canary_latency",
        "canary:canary_accuracy",
    }
    assert checks["canary:canary_error_rate"].value == pytest.approx(0.04 - 0.005)
    assert checks["canary:canary_error_rate"].breached
    assert checks["canary:canary_latency"].value == pytest.approx(2.5)
    assert checks["canary:canary_accuracy"].breached
    assert not checks["live:error_rate"].breached


def test_prediction_drift_acts_and_dataset_drift_only_alerts_by_default() -> None:
    refs = [
        BinnedReference("x", "numeric", ("0", "1", "nan"), (0.5, 0.5, 0.0), 1000),
        BinnedReference("__prediction__", "categorical", ("a", "b"), (0.5, 0.5), 1000),
    ]
    report = drift_report("rf", 2, refs, {"x": {"0": 900, "1": 100}}, {"a": 950, "b": 50}, DriftConfig(), 60)
    checks = _by_key(evaluate(Policy(drift={}), ModelState("rf", 2, None, 0.0), {}, {"live": report}))
    prediction, dataset = checks["live:prediction_drift"], checks["live:dataset_drift"]
    assert prediction.breached and prediction.enforce
    assert dataset.breached and not dataset.enforce
    assert dataset.value == 1.0
