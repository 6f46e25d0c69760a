"""Reconcile works on many models and endpoints at once, through in-memory endpoints (no Triton).

The fakes are our own ``Endpoint`` interface (``tests.unit.test_rollout_plan.FakeEndpoint``) with a load that meets
a barrier: loads that ran one after another would never meet it and fail, so each test proves overlap without
timing anything. The e2e tests (tests/e2e/test_controller_e2e.py) drive the same code against real servers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from tests.unit.test_rollout import TOKEN, write_version
from tests.unit.test_rollout_plan import FakeEndpoint
from tritonops.control_plane.endpoint import Endpoint
from tritonops.control_plane.errors import EndpointUnreachableError
from tritonops.control_plane.fleet import ReconcileReport, reconcile
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.settings import Settings

MODELS = [f"m{i}" for i in range(6)]
URLS = ["fake-a:8001", "fake-b:8001"]


class MeetingEndpoint(FakeEndpoint):
    """A fake whose loads wait at ``barrier`` (when set) and count how many run at once."""

    def __init__(self, url: str, repository: Path, barrier: threading.Barrier | None, peak: dict[str, int]) -> None:
        super().__init__(url, repository)
        self.barrier = barrier
        self.peak = peak
        self.guard = threading.Lock()
        self.running = 0
        self.fail_after_loads: int | None = None

    def load(self, config: mc.ModelConfig, files: Mapping[str, bytes] | None = None) -> None:
        with self.guard:
            self.running += 1
            self.peak[self.url] = max(self.peak.get(self.url, 0), self.running)
            if self.fail_after_loads is not None and len(self.calls) >= self.fail_after_loads:
                self.unreachable = True
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=10)  # BrokenBarrierError if the loads were serial
            super().load(config, files)
        finally:
            with self.guard:
                self.running -= 1


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    repository = tmp_path / "repo"
    for model in MODELS:
        write_version(repository, model, 1)
    settings = Settings(repository=repository, state_path=tmp_path / "state.db", admin_token=TOKEN)
    with StateStore.open(settings.state) as store:
        for url in URLS:
            store.add_endpoint(url, AuditEntry("test", "fleet-add", None, None, None, "", "ok", url))
        for model in MODELS:
            store.set_live(model, 1, AuditEntry("test", "promote", model, None, 1, "", "ok"))
    return settings


def _fakes(settings: Settings, barrier: threading.Barrier | None, peak: dict[str, int]) -> dict[str, MeetingEndpoint]:
    return {url: MeetingEndpoint(url, settings.repository, barrier, peak) for url in URLS}


def _run(settings: Settings, fakes: dict[str, MeetingEndpoint], per_endpoint: int) -> ReconcileReport:
    def connect(url: str, headers: Mapping[str, str]) -> Endpoint:
        return fakes[url]

    with StateStore.open(settings.state) as store:
        return reconcile(
            store,
            settings.repository,
            settings.admin_headers(),
            actor="bob",
            connect=connect,
            per_endpoint=per_endpoint,
        )


def _applies(settings: Settings) -> list[tuple[str, str, str]]:
    with StateStore.open(settings.state) as store:
        return sorted(
            (str(e.model), json.loads(e.detail)["endpoint"], e.result)
            for e in store.audit(None)
            if e.action == "reconcile-apply"
        )


def test_models_load_at_once_on_every_endpoint_up_to_the_bound(settings: Settings) -> None:
    peak: dict[str, int] = {}
    barrier = threading.Barrier(3 * len(URLS))  # three loads on each endpoint at the same moment, or none pass
    fakes = _fakes(settings, barrier, peak)
    with StateStore.open(settings.state) as store:
        before = len(store.audit(None))
    report = _run(settings, fakes, per_endpoint=3)
    assert report.ok
    assert peak == {url: 3 for url in URLS}  # bounded: never more than per_endpoint on one server
    for fake in fakes.values():
        assert sorted(fake.calls) == sorted(f"load {m} v1" for m in MODELS)
        assert {name: fake._versions(name) for name in fake.loaded} == {m: (1,) for m in MODELS}
    # one reconcile-apply per model and endpoint, each with its actions, then the summary
    assert _applies(settings) == sorted((m, url, "ok") for m in MODELS for url in URLS)
    with StateStore.open(settings.state) as store:
        events = store.audit(None)[before:]
        assert [e.action for e in events] == ["reconcile-apply"] * 12 + ["reconcile"]
        first = json.loads(events[0].detail)
        assert first["actions"] == ["loaded m0 version 1 (warmed up)"] and first["seconds"] >= 0
        # the report lists models in order whatever order the workers finished in
        assert [c.model for c in report.endpoints[0].changes] == MODELS
        for model in MODELS:  # every lock is released
            with store.rollout_lock(model, "test"):
                pass
    assert _run(settings, _fakes_in_sync(fakes), per_endpoint=3).divergence_count == 0


def _fakes_in_sync(fakes: dict[str, MeetingEndpoint]) -> dict[str, MeetingEndpoint]:
    for fake in fakes.values():
        fake.barrier = None
        fake.calls.clear()
    return fakes


def test_one_per_endpoint_is_one_load_at_a_time(settings: Settings) -> None:
    peak: dict[str, int] = {}
    report = _run(settings, _fakes(settings, None, peak), per_endpoint=1)
    assert report.ok and peak == {url: 1 for url in URLS}


def test_a_model_locked_by_a_rollout_is_skipped_and_the_others_are_reconciled(settings: Settings) -> None:
    fakes = _fakes(settings, None, {})
    with StateStore.open(settings.state) as store, store.rollout_lock("m2", "promote by alice"):
        report = _run(settings, fakes, per_endpoint=4)
    assert report.skipped and "m2" in report.skipped[0] and "promote by alice" in report.skipped[0]
    assert sorted(fakes[URLS[0]].loaded) == [m for m in MODELS if m != "m2"]
    assert _applies(settings) == sorted((m, url, "ok") for m in MODELS if m != "m2" for url in URLS)


def test_an_endpoint_lost_mid_run_stops_there_and_the_other_finishes(settings: Settings) -> None:
    fakes = _fakes(settings, None, {})
    fakes[URLS[1]].fail_after_loads = 2  # the third load finds the server gone, and every later call too
    report = _run(settings, fakes, per_endpoint=1)
    assert not report.ok
    good, lost = report.endpoints
    assert good.errors == [] and sorted(fakes[URLS[0]].loaded) == MODELS
    assert lost.unusable and len(lost.errors) == 1 and "fake-b:8001" in lost.errors[0]  # reported once
    assert sorted(fakes[URLS[1]].loaded) == ["m0", "m1"]
    applies = _applies(settings)
    assert [a for a in applies if a[1] == URLS[1]] == [
        ("m0", URLS[1], "ok"),
        ("m1", URLS[1], "ok"),
        ("m2", URLS[1], "failed"),
    ]


def test_a_failed_smoke_check_fails_that_model_only(settings: Settings) -> None:
    fakes = _fakes(settings, None, {})
    fakes[URLS[0]].wrong_answers.add(("m3", 1))
    report = _run(settings, fakes, per_endpoint=4)
    errors = report.endpoints[0].errors
    assert len(errors) == 1 and errors[0].startswith("m3:") and "smoke" in errors[0]
    assert report.endpoints[1].errors == []
    assert ("m3", URLS[0], "failed") in _applies(settings)
    assert sum(1 for a in _applies(settings) if a[2] == "ok") == len(MODELS) * len(URLS) - 1


def test_an_unreachable_endpoint_is_reported_once(settings: Settings) -> None:
    fakes = _fakes(settings, None, {})
    fakes[URLS[0]].unreachable = True
    report = _run(settings, fakes, per_endpoint=4)
    errors = report.endpoints[0].errors
    assert len(errors) == 1 and str(EndpointUnreachableError(URLS[0], "connection refused (fake)")) == errors[0]
    assert sorted(fakes[URLS[1]].loaded) == MODELS and fakes[URLS[0]].calls == []


def test_per_endpoint_below_one_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="per_endpoint: expected at least 1, got 0"):
        _run(settings, _fakes(settings, None, {}), per_endpoint=0)


def test_models_in_sync_take_no_lock_but_one_being_rolled_out_is_skipped(settings: Settings) -> None:
    fakes = _fakes(settings, None, {})
    assert _run(settings, fakes, per_endpoint=2).ok
    _fakes_in_sync(fakes)
    with StateStore.open(settings.state) as store, store.rollout_lock("m2", "someone"):
        quiet = _run(settings, fakes, per_endpoint=2)  # in sync: observed without locks, nothing to do
    assert quiet.ok and quiet.skipped == [] and quiet.divergence_count == 0
    assert all(fake.calls == [] for fake in fakes.values())
    with StateStore.open(settings.state) as store, store.rollout_lock("m2", "promote by alice"):
        store.begin_operation(AuditEntry("alice", "promote", "m2", 1, 2, "", "started"))
        busy = _run(settings, fakes, per_endpoint=2)  # an operation in flight: the locked pass, which skips it
    assert len(busy.skipped) == 1 and "promote by alice" in busy.skipped[0]
