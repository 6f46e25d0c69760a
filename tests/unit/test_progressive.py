"""Progressive rollouts without a server: the spec's validation, the pure step/analysis decision with injected
observations, the stored rollout (SQLite and PostgreSQL), and the controller's driver over injected metric windows
(parsed from Prometheus text as a scrape would give them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_rollout import write_version
from tritonops.control_plane.controller.rollouts import RolloutDriver
from tritonops.control_plane.errors import (
    InvalidRolloutError,
    PolicyError,
    RolloutInProgressError,
    RolloutSpecError,
    UnknownModelError,
    UnknownVersionError,
)
from tritonops.control_plane.guardrails import Check
from tritonops.control_plane.metrics import FleetWindow, parse_metrics, window
from tritonops.control_plane.problem_codes import problem_for
from tritonops.control_plane.progressive import (
    Analysis,
    NoData,
    Observation,
    Progress,
    RolloutSpec,
    decide,
    load_analysis,
    parse_analysis_data,
    parse_interval,
    parse_steps,
)
from tritonops.control_plane.progressive_runs import (
    abort_rollout,
    active_rollout,
    insert_rollout,
    pause_rollout,
    resume_rollout,
    rollout_status,
    start_rollout,
)
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.settings import Settings, StateLocation

# -- the spec -----------------------------------------------------------------------------------------------------


def test_steps_and_intervals_parse() -> None:
    assert parse_steps("5,25,50,100") == (5.0, 25.0, 50.0, 100.0)
    assert parse_steps([10, 50.5]) == (10.0, 50.5)
    assert parse_interval("60s") == 60.0 and parse_interval("2m") == 120.0 and parse_interval("1h") == 3600.0
    assert parse_interval("1500ms") == 1.5 and parse_interval(3) == 3.0 and parse_interval("90") == 90.0


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("5,25,25,100", "strictly increasing percentages, got 25 after 25"),
        ("50,25", "strictly increasing percentages, got 25 after 50"),
        ("0,50", r"percentages in \(0, 100\], got 0"),
        ("5,150", r"percentages in \(0, 100\], got 150"),
        ("5,x", "comma-separated percentages"),
        ([], "at least one percentage"),
        (list(range(1, 23)), "at most 20 steps"),
    ],
)
def test_bad_steps_name_the_field(steps: str | list[float], message: str) -> None:
    with pytest.raises(RolloutSpecError, match=f"rollout steps: expected {message}") as caught:
        parse_steps(steps)
    assert caught.value.field == "steps"
    assert problem_for(caught.value)[:2] == (422, "invalid_rollout_spec")


@pytest.mark.parametrize("interval", ["abc", "10x", "0s", "0.5", "2d", -3, 100_000])
def test_bad_intervals_are_refused(interval: str | float) -> None:
    with pytest.raises(RolloutSpecError, match="rollout interval: expected"):
        parse_interval(interval)


def test_analysis_typo_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="field treshold: Extra inputs are not permitted"):
        parse_analysis_data({"treshold": 2})
    with pytest.raises(PolicyError, match=r"field error_rate\.max: Input should be less than or equal to 1"):
        parse_analysis_data({"error_rate": {"max": 5}})
    with pytest.raises(PolicyError, match="field no_data: Input should be 'hold' or 'fail'"):
        parse_analysis_data({"no_data": "skip"})
    good = tmp_path / "analysis.yaml"
    good.write_text("threshold: 2\nmin_requests: 20\nlatency: {p99_ms: 40}\nno_data: hold\n")
    analysis = load_analysis(good)
    assert analysis.threshold == 2 and analysis.no_data is NoData.HOLD
    policy = analysis.policy()
    assert policy.min_requests == 20 and policy.latency is not None and policy.latency.p99_ms == 40
    assert policy.consecutive == 1
    assert parse_analysis_data(None) == Analysis()
    with pytest.raises(PolicyError, match=r"expected a \.yaml or \.yml file"):
        load_analysis(tmp_path / "analysis.toml")


# -- the decision (pure) ------------------------------------------------------------------------------------------

SPEC = RolloutSpec(2, (10.0, 50.0, 100.0), 10.0, Analysis(min_requests=50))


def _check(breached: bool, *, enough: bool = True, enforce: bool = True, name: str = "error_rate") -> Check:
    return Check(name, "canary", 2, 0.3 if breached else 0.0, 0.05, breached, enough, enforce, "test")


def _progress(step: int = 0, failed: int = 0, started: float = 0.0) -> Progress:
    return Progress(step, started, started, started + 10.0, failed)


def test_a_step_waits_for_its_interval() -> None:
    decision = decide(SPEC, _progress(), Observation(500, (_check(True),)), now=9.9)
    assert decision.kind == "wait" and decision.verdict is None
    pending = Progress(1, None, 0.0, 0.0)
    assert decide(SPEC, pending, Observation(500, ()), now=100.0).kind == "wait"


def test_passing_steps_advance_and_the_last_promotes() -> None:
    ok = Observation(80, (_check(False),))
    first = decide(SPEC, _progress(0), ok, now=10.0)
    assert (first.kind, first.verdict, first.failed_checks) == ("advance", "passed", 0)
    assert "step 1/3 (10%) passed" in first.reason and "step 2 (50%)" in first.reason
    last = decide(SPEC, _progress(2), ok, now=10.0)
    assert last.kind == "promote" and "step 3/3 (100%) passed" in last.reason


def test_a_failed_check_rolls_back_at_the_threshold() -> None:
    bad = Observation(80, (_check(True), _check(False, name="latency_p99")))
    decision = decide(SPEC, _progress(1), bad, now=10.0)
    assert (decision.kind, decision.verdict, decision.failed_checks) == ("rollback", "failed", 1)
    assert [c.guardrail for c in decision.failed] == ["error_rate"] and "error_rate 0.3 > 0.05" in decision.reason
    patient = RolloutSpec(2, (10.0, 50.0), 10.0, Analysis(threshold=2, min_requests=50))
    retry = decide(patient, _progress(0), bad, now=10.0)
    assert (retry.kind, retry.failed_checks) == ("retry", 1) and "1 of 2 failed checks" in retry.reason
    again = decide(patient, _progress(0, failed=1), bad, now=10.0)
    assert (again.kind, again.failed_checks) == ("rollback", 2)


def test_breaches_without_data_or_not_enforced_do_not_fail() -> None:
    quiet = Observation(80, (_check(True, enough=False), _check(True, enforce=False, name="dataset_drift")))
    assert decide(SPEC, _progress(), quiet, now=10.0).kind == "advance"


def test_no_data_holds_through_the_grace_period_then_fails_by_default() -> None:
    sparse = Observation(12, (_check(False, enough=False),))
    held = decide(SPEC, _progress(), sparse, now=19.0)  # interval 10 + grace (one interval) = 20 s
    assert (held.kind, held.verdict, held.failed_checks) == ("hold", "inconclusive", 0)
    assert "12 canary requests in the window, 50 needed" in held.reason
    failed = decide(SPEC, _progress(), sparse, now=20.0)
    assert (failed.kind, failed.verdict, failed.failed_checks) == ("rollback", "inconclusive", 1)
    assert "counted as a failed check" in failed.reason
    short = RolloutSpec(2, (10.0,), 10.0, Analysis(min_requests=50, no_data_grace_seconds=0))
    assert decide(short, _progress(), sparse, now=10.0).kind == "rollback"


def test_no_data_hold_never_fails() -> None:
    holding = RolloutSpec(2, (10.0,), 10.0, Analysis(min_requests=50, no_data=NoData.HOLD))
    decision = decide(holding, _progress(), Observation(0, ()), now=10_000.0)
    assert (decision.kind, decision.failed_checks) == ("hold", 0)


# -- stored rollouts, on SQLite and PostgreSQL --------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, state_location: StateLocation) -> Settings:
    repository = tmp_path / "repo"
    for version in (1, 2):
        write_version(repository, "rf", version)
    return Settings(
        repository=repository,
        state_path=state_location.path or tmp_path / "unused.db",
        admin_token=None,
        state_url=state_location.url,
        state_password=state_location.password,
    )


def _live(settings: Settings, live: int = 1, canary: int | None = None, weight: float = 0.0) -> None:
    with StateStore.open(settings.state) as store:
        store.set_live("rf", live, AuditEntry("test", "promote", "rf", None, live, "", "ok"))
        if canary is not None:
            store.set_canary("rf", canary, weight, AuditEntry("test", "canary", "rf", live, canary, "", "ok"))


def _stored(settings: Settings, spec: RolloutSpec = SPEC, now: float = 1000.0) -> None:
    with StateStore.open(settings.state) as store:
        insert_rollout(store, "rf", spec, from_version=1, actor="alice", reason="", now=now)


def test_start_refuses_bad_requests_and_changes_nothing(settings: Settings) -> None:
    with pytest.raises(UnknownModelError):
        start_rollout(settings, "rf", SPEC, actor="alice")
    _live(settings)
    with pytest.raises(UnknownVersionError, match="model 'rf' version 7: no directory"):
        start_rollout(settings, "rf", RolloutSpec(7, (10.0,), 10.0), actor="alice")
    with pytest.raises(InvalidRolloutError, match="version 1 is already live"):
        start_rollout(settings, "rf", RolloutSpec(1, (10.0,), 10.0), actor="alice")
    _live(settings, canary=2, weight=0.1)
    _stored(settings)
    holder = "progressive rollout 1 of version 2 by alice, running at step 1/3"
    with pytest.raises(RolloutInProgressError, match=holder):
        start_rollout(settings, "rf", SPEC, actor="bob")
    with StateStore.open(settings.state) as store:
        with pytest.raises(RolloutInProgressError):  # the same check inside the insert's transaction
            insert_rollout(store, "rf", SPEC, from_version=1, actor="bob", reason="", now=0.0)
        refused = [e for e in store.audit("rf") if e.action == "rollout-start" and e.result == "refused"]
        assert [e.actor for e in refused] == ["alice", "alice", "alice", "bob"]
        assert store.db.execute("SELECT COUNT(*) FROM progressive_rollouts").fetchone()[0] == 1
        assert store.model("rf").canary_weight == 0.1  # type: ignore[union-attr]
    with pytest.raises(RolloutSpecError, match="rollout version: expected a version number >= 1, got 0"):
        RolloutSpec(0, (10.0,), 10.0)


def test_pause_resume_abort_and_status(settings: Settings) -> None:
    _live(settings)
    with pytest.raises(InvalidRolloutError, match="has no progressive rollout"):
        rollout_status(settings, "rf")
    with pytest.raises(InvalidRolloutError, match="pause 'rf': it has no progressive rollout"):
        pause_rollout(settings, "rf", actor="alice")
    _stored(settings)
    paused = pause_rollout(settings, "rf", actor="alice", reason="looking at a dashboard")
    assert paused.status == "paused" and paused.active
    with pytest.raises(InvalidRolloutError, match="it has a paused rollout; expected one running"):
        pause_rollout(settings, "rf", actor="alice")
    resumed = resume_rollout(settings, "rf", actor="bob", clock=lambda: 5000.0)
    assert resumed.status == "running" and resumed.step_started_at == 5000.0
    assert (resumed.window_started_at, resumed.next_check_at) == (5000.0, 5010.0)
    aborted = abort_rollout(settings, "rf", actor="carol", reason="enough")
    assert aborted.status == "aborted" and aborted.finished_at is not None
    assert aborted.outcome == "aborted by carol: enough"
    assert rollout_status(settings, "rf").id == aborted.id
    assert [e["event"] for e in aborted.steps_log] == ["step", "pause", "resume", "abort"]
    with StateStore.open(settings.state) as store:
        assert active_rollout(store, "rf") is None
        actions = [(e.action, e.actor, e.result) for e in store.audit("rf") if e.action.startswith("rollout-")]
        assert actions == [
            ("rollout-pause", "alice", "refused"),
            ("rollout-start", "alice", "ok"),
            ("rollout-pause", "alice", "ok"),
            ("rollout-pause", "alice", "refused"),
            ("rollout-resume", "bob", "ok"),
            ("rollout-abort", "carol", "ok"),
        ]
        assert json.loads(store.audit("rf")[-1].detail)["rollout"] == aborted.id
    _stored(settings)  # a finished rollout does not block the next one


# -- the driver over injected windows -----------------------------------------------------------------------------


def _metrics(canary_answered: int, canary_invalid: int, live_ok: int) -> str:
    """What Triton's /metrics shows while live scores its canary in-process: the canary's requests only in the
    backend's routing counter, its refusals under its own version."""
    return (
        "# TYPE nv_inference_request_success counter\n"
        f'nv_inference_request_success{{model="rf",version="1"}} {live_ok + canary_answered}\n'
        'nv_inference_request_success{model="rf__canary",version="2"} 1\n'  # the smoke check
        "# TYPE nv_inference_request_failure counter\n"
        'nv_inference_request_failure{model="rf",version="1"} 0\n'
        'nv_inference_request_failure{model="rf__canary",version="2"} 0\n'
        "# TYPE tritonops_canary_requests_total counter\n"
        f'tritonops_canary_requests_total{{model="rf",version="1",canary_version="2",outcome="answered"}} '
        f"{canary_answered}\n"
        'tritonops_canary_requests_total{model="rf",version="1",canary_version="2",outcome="fallback"} 0\n'
        "# TYPE tritonops_invalid_requests counter\n"
        f'tritonops_invalid_requests{{model="rf",version="2",reason="nan"}} {canary_invalid}\n'
        'tritonops_invalid_requests{model="rf",version="1",reason="nan"} 0\n'
    )


def _windows(text: str) -> FleetWindow:
    return FleetWindow({"triton:8002": window(None, parse_metrics(text, 1010.0))}, {})


def test_the_driver_rolls_back_a_failing_step_with_evidence(settings: Settings) -> None:
    _live(settings, canary=2, weight=0.1)
    _stored(settings)
    driver = RolloutDriver(settings, lambda lookback: _windows(_metrics(99, 40, 900)), clock=lambda: 1011.0)
    driver.tick()  # the canary's removal fails afterwards (no fleet), but the desired state is committed first
    with StateStore.open(settings.state) as store:
        rollout = rollout_status(settings, "rf")
        state = store.model("rf")
        (analysis,) = [e for e in store.audit("rf") if e.action == "rollout-analysis"]
    assert rollout.status == "rolled-back" and rollout.failed_checks == 1
    assert state is not None and state.live == 1 and state.canary is None
    assert analysis.result == "failed" and "step 1/3 (10%) failed: error_rate 0.4 > 0.05" in analysis.reason
    evidence = json.loads(analysis.detail)
    assert evidence["canary_requests"] == 100 and evidence["canary_errors"] == 40 and evidence["verdict"] == "failed"
    assert {c["guardrail"] for c in evidence["checks"]} >= {"error_rate", "canary_error_rate"}
    logged = rollout.steps_log[-1]
    assert (logged["event"], logged["verdict"], logged["canary_requests"], logged["decision"]) == (
        "analysis",
        "failed",
        100,
        "rollback",
    )


def test_the_driver_waits_holds_and_closes_superseded_rollouts(settings: Settings) -> None:
    _live(settings, canary=2, weight=0.1)
    _stored(settings)
    clock = [1005.0]
    driver = RolloutDriver(settings, lambda lookback: _windows(_metrics(9, 0, 90)), clock=lambda: clock[0])
    driver.tick()  # before the interval: nothing
    assert rollout_status(settings, "rf").steps_log[-1]["event"] == "step"
    clock[0] = 1011.0
    driver.tick()  # 10 canary requests < 50: inconclusive, held
    held = rollout_status(settings, "rf")
    assert held.status == "running" and held.next_check_at == 1021.0 and held.steps_log[-1]["verdict"] == "inconclusive"
    with StateStore.open(settings.state) as store:  # an operator aborts the canary by hand
        store.set_canary("rf", None, 0.0, AuditEntry("bob", "abort-canary", "rf", 1, None, "", "ok"))
    driver.tick()
    ended = rollout_status(settings, "rf")
    assert ended.status == "superseded" and "removed outside the rollout" in ended.outcome


def test_a_passed_step_is_stored_before_it_is_applied_so_a_new_leader_applies_it(settings: Settings) -> None:
    _live(settings, canary=2, weight=0.1)
    _stored(settings)
    healthy = _windows(_metrics(99, 0, 900))
    leader = RolloutDriver(settings, lambda lookback: healthy, clock=lambda: 1011.0)
    leader.tick()
    leader.tick()  # backing off after the failed turn: no second attempt yet
    pending = rollout_status(settings, "rf")  # the next weight could not be applied: the fleet is empty
    assert (pending.status, pending.step, pending.step_started_at) == ("running", 1, None)
    assert pending.steps_log[-1]["verdict"] == "passed" and pending.steps_log[-1]["decision"] == "advance"
    RolloutDriver(settings, lambda lookback: healthy, clock=lambda: 1012.0).tick()  # another replica, now leader
    with StateStore.open(settings.state) as store:
        attempts = [
            e
            for e in store.audit("rf")
            if e.action == "canary" and e.actor == "controller/rollout" and e.result != "started"
        ]
    assert [e.result for e in attempts] == ["refused", "refused"]  # each leader applies the pending step first
    assert all("step 2/3" in e.reason and "the fleet is empty" in e.detail for e in attempts)
    assert rollout_status(settings, "rf").step_started_at is None
