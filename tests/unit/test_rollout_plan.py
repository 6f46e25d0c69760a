"""Reconcile's pure plan, and promote / canary / rollback / reconcile driven through a fake endpoint.

The fake is our own ``Endpoint`` interface held in memory (no Triton): it lets these tests reach promote's success,
failure and restore paths, which the e2e test covers against real servers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc

from tests.unit.test_rollout import TOKEN, write_version
from tritonops.contract.names import canary_alias
from tritonops.control_plane import rollout
from tritonops.control_plane.desired import desired, live_config, version_manifest
from tritonops.control_plane.endpoint import Endpoint, InferenceCounts
from tritonops.control_plane.errors import (
    ControlPlaneError,
    EndpointUnreachableError,
    FleetApplyError,
    GateError,
    VersionLoadError,
)
from tritonops.control_plane.fleet import reconcile
from tritonops.control_plane.plan import LoadCanary, LoadLive, ModelObservation, Unload, differences, plan
from tritonops.control_plane.state import ModelState, StateStore
from tritonops.settings import Settings


class FakeEndpoint:
    """An in-memory Triton: what is loaded under which name, answers from the manifest, faults on demand."""

    def __init__(self, url: str, repository: Path) -> None:
        self.url = url
        self.repository = repository
        self.loaded: dict[str, mc.ModelConfig] = {}
        self.calls: list[str] = []
        self.fail_loads: set[tuple[str, int]] = set()
        self.wrong_answers: set[tuple[str, int]] = set()
        self.unreachable = False
        self.closed = 0

    def check(self) -> None:
        if self.unreachable:
            raise EndpointUnreachableError(self.url, "connection refused (fake)")

    def _versions(self, name: str) -> tuple[int, ...]:
        config = self.loaded.get(name)
        return tuple(config.version_policy.specific.versions) if config is not None else ()

    def observe(self, model: str) -> ModelObservation:
        self.check()
        config = self.loaded.get(model)
        copy = None
        if config is not None:
            copy = mc.ModelConfig()
            copy.CopyFrom(config)
        return ModelObservation(model, copy, self._versions(model), self._versions(canary_alias(model)))

    def wait_settled(self, name: str, timeout: float = 120.0) -> bool:
        return True

    def load(self, config: mc.ModelConfig, files: Mapping[str, bytes] | None = None) -> None:
        self.check()
        version = config.version_policy.specific.versions[0]
        self.calls.append(f"load {config.name} v{version}")
        if (config.name, version) in self.fail_loads:
            raise VersionLoadError(self.url, config.name, version, "the fake refuses it")
        stored = mc.ModelConfig()
        stored.CopyFrom(config)
        self.loaded[config.name] = stored

    def unload(self, name: str) -> None:
        self.check()
        self.calls.append(f"unload {name}")
        self.loaded.pop(name, None)

    def infer(
        self, name: str, version: int, inputs: Sequence[grpcclient.InferInput]
    ) -> tuple[list[Any], np.ndarray[Any, Any]]:
        if version not in self._versions(name):
            raise ControlPlaneError(f"fake {self.url}: {name} v{version} is not loaded")
        expected = version_manifest(self.repository, name.removesuffix("__canary"), version).reference.expected
        labels = list(expected.labels)
        if (name, version) in self.wrong_answers:
            labels[0] = "yes" if labels[0] == "no" else "no"
        return labels, np.array(expected.probabilities, dtype=np.float64)

    def statistics(self, name: str) -> dict[int, InferenceCounts]:
        return {v: InferenceCounts(success=10, failure=0) for v in self._versions(name)}

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    repository = tmp_path / "repo"
    for version in (1, 2, 3):
        write_version(repository, "rf", version)
    return Settings(repository=repository, state_path=tmp_path / "state.db", admin_token=TOKEN)


@pytest.fixture
def fakes(settings: Settings) -> dict[str, FakeEndpoint]:
    endpoints = {url: FakeEndpoint(url, settings.repository) for url in ("fake-a:8001", "fake-b:8001")}
    for url in endpoints:
        rollout.fleet_add(settings, url, actor="alice")
    return endpoints


def connector(fakes: dict[str, FakeEndpoint]) -> Any:
    def connect(url: str, headers: Mapping[str, str]) -> Endpoint:
        assert headers == {"admin-key": TOKEN}  # the admin key reaches every endpoint
        return fakes[url]

    return connect


def desired_state(settings: Settings) -> ModelState | None:
    with StateStore.open(settings.state) as store:
        return store.model("rf")


def last_audit(settings: Settings) -> tuple[str, str, str]:
    with StateStore.open(settings.state) as store:
        event = store.audit("rf")[-1]
        return event.action, event.result, event.detail


# -- plan: pure ---------------------------------------------------------------------------------------
def observation(
    settings: Settings, live: ModelState | None, ready: tuple[int, ...] = (), canary: tuple[int, ...] = ()
) -> ModelObservation:
    config = live_config(settings.repository, live) if live is not None else None
    return ModelObservation("rf", config, ready, canary)


def test_an_empty_endpoint_gets_the_candidate_first_then_live(settings: Settings) -> None:
    state = ModelState("rf", 1, 2, 0.25)
    wanted = desired(settings.repository, state)
    steps = plan(wanted, observation(settings, None))
    assert [type(s) for s in steps] == [LoadCanary, LoadLive]
    assert [s.describe() for s in steps] == [
        "loaded rf__canary version 2 (warmed up)",
        "loaded rf version 1 (warmed up)",
    ]
    live = steps[1]
    assert isinstance(live, LoadLive) and live.config == wanted.live_config
    assert differences(wanted, observation(settings, None)) == [
        "rf: not loaded (want version 1)",
        "rf__canary: ready versions [], want [2]",
    ]


def test_an_endpoint_in_sync_needs_nothing(settings: Settings) -> None:
    state = ModelState("rf", 1, 2, 0.25)
    observed = observation(settings, state, ready=(1,), canary=(2,))
    assert plan(desired(settings.repository, state), observed) == []
    assert differences(desired(settings.repository, state), observed) == []


def test_ending_a_canary_republishes_live_then_drains_before_unloading(settings: Settings) -> None:
    routed = observation(settings, ModelState("rf", 1, 2, 0.5), ready=(1,), canary=(2,))
    wanted = desired(settings.repository, ModelState("rf", 1, None, 0.0))
    assert plan(wanted, routed) == [
        LoadLive("rf", 1, live_config(settings.repository, wanted.state), warm_up=False),  # serving already
        Unload("rf__canary", drain=True),
    ]
    assert differences(wanted, routed) == [
        'rf: tritonops.canary is \'{"model":"rf__canary","version":2,"weight":0.5}\', want None',
        "rf__canary: loaded (versions [2]) but no candidate is wanted",
    ]
    unrouted = observation(settings, ModelState("rf", 1, None, 0.0), ready=(1,), canary=(2,))
    assert plan(wanted, unrouted) == [Unload("rf__canary", drain=False)]


def test_a_stale_version_beside_live_is_replaced_and_named(settings: Settings) -> None:
    wanted = desired(settings.repository, ModelState("rf", 2, None, 0.0))
    observed = observation(settings, ModelState("rf", 1, None, 0.0), ready=(1, 2))
    assert [s.describe() for s in plan(wanted, observed)] == ["loaded rf version 2 (warmed up)"]
    assert differences(wanted, observed) == [
        "rf: loaded with versions [1], want [2]",
        "rf: versions [1] also ready, want only 2",
    ]


def test_nothing_wanted_unloads_what_is_there(settings: Settings) -> None:
    wanted = desired(settings.repository, ModelState("rf", None, None, 0.0))
    observed = observation(settings, ModelState("rf", 1, None, 0.0), ready=(1,), canary=(2,))
    assert plan(wanted, observed) == [Unload("rf"), Unload("rf__canary")]
    assert plan(wanted, observation(settings, None)) == []


# -- promote through the fake: success, failure, restore -------------------------------------------------
def test_promote_stages_checks_switches_then_drops_the_alias(
    settings: Settings, fakes: dict[str, FakeEndpoint]
) -> None:
    connect = connector(fakes)
    first = rollout.promote(settings, "rf", 1, actor="alice", connect=connect)
    assert first.detail == "live None -> 1 on 2 endpoint(s)"
    for fake in fakes.values():
        fake.calls.clear()
    result = rollout.promote(settings, "rf", 2, actor="alice", reason="better", connect=connect)
    assert result.detail == "live 1 -> 2 on 2 endpoint(s)"
    assert [(s.endpoint, s.name, s.rows, s.label_mismatches) for s in result.smoke] == [
        ("fake-a:8001", "rf__canary", 3, 0),
        ("fake-b:8001", "rf__canary", 3, 0),
    ]
    for fake in fakes.values():
        assert fake.calls == ["load rf__canary v2", "load rf v2", "unload rf__canary"]
        assert sorted(fake.loaded) == ["rf"] and fake._versions("rf") == (2,)
        assert fake.closed == 2  # every operation closes what it opened
    assert desired_state(settings) == ModelState("rf", 2, None, 0.0)
    assert last_audit(settings)[:2] == ("promote", "ok")


def test_a_failed_switch_puts_every_endpoint_back_and_keeps_the_state(
    settings: Settings, fakes: dict[str, FakeEndpoint]
) -> None:
    connect = connector(fakes)
    rollout.promote(settings, "rf", 1, actor="alice", connect=connect)
    fakes["fake-b:8001"].fail_loads.add(("rf", 2))
    with pytest.raises(VersionLoadError, match=r"fake-b:8001: loading 'rf' version 2 failed: ") as raised:
        rollout.promote(settings, "rf", 2, actor="alice", connect=connect)
    assert raised.value.__notes__ == ["endpoints restored to the previous state"]  # the message itself is untouched
    for fake in fakes.values():  # A had switched to 2 already: back on 1, candidate gone
        assert sorted(fake.loaded) == ["rf"] and fake._versions("rf") == (1,)
    assert fakes["fake-a:8001"].calls[-3:] == ["load rf v2", "load rf v1", "unload rf__canary"]
    assert desired_state(settings) == ModelState("rf", 1, None, 0.0)
    action, result, detail = last_audit(settings)
    assert (action, result) == ("promote", "failed") and "endpoints restored to the previous state" in detail


def test_a_restore_that_fails_too_says_to_reconcile(settings: Settings, fakes: dict[str, FakeEndpoint]) -> None:
    connect = connector(fakes)
    rollout.promote(settings, "rf", 1, actor="alice", connect=connect)
    fakes["fake-a:8001"].fail_loads.add(("rf", 1))  # A switches to 2, then can't go back
    fakes["fake-b:8001"].fail_loads.add(("rf", 2))
    with pytest.raises(VersionLoadError, match=r"restoring some endpoints failed, run `tritonops reconcile`: fake-a"):
        rollout.promote(settings, "rf", 2, actor="alice", connect=connect)
    assert desired_state(settings) == ModelState("rf", 1, None, 0.0)
    fakes["fake-a:8001"].fail_loads.clear()
    with StateStore.open(settings.state) as store:
        report = reconcile(store, settings.repository, settings.admin_headers(), actor="bob", connect=connect)
    assert report.ok
    assert [r.actions for r in report.endpoints] == [["loaded rf version 1 (warmed up)", "unloaded rf__canary"], []]
    assert all(sorted(f.loaded) == ["rf"] and f._versions("rf") == (1,) for f in fakes.values())


def test_a_smoke_mismatch_refuses_and_unstages(settings: Settings, fakes: dict[str, FakeEndpoint]) -> None:
    connect = connector(fakes)
    rollout.promote(settings, "rf", 1, actor="alice", connect=connect)
    fakes["fake-b:8001"].wrong_answers.add(("rf__canary", 2))
    with pytest.raises(GateError, match=r"smoke gate refused it: endpoint fake-b:8001 \(rf__canary\): 1 of 3 labels"):
        rollout.promote(settings, "rf", 2, actor="alice", connect=connect)
    assert all(sorted(f.loaded) == ["rf"] and f._versions("rf") == (1,) for f in fakes.values())
    assert last_audit(settings)[:2] == ("promote", "refused")


def test_a_dry_run_passes_the_gates_and_changes_nothing(settings: Settings, fakes: dict[str, FakeEndpoint]) -> None:
    connect = connector(fakes)
    rollout.promote(settings, "rf", 1, actor="alice", connect=connect)
    result = rollout.promote(settings, "rf", 2, actor="alice", dry_run=True, max_latency_ms=5000, connect=connect)
    assert result.dry_run and len(result.smoke) == 2 and all(len(s.latencies_ms) == 20 for s in result.smoke)
    assert all(sorted(f.loaded) == ["rf"] and f._versions("rf") == (1,) for f in fakes.values())
    assert desired_state(settings) == ModelState("rf", 1, None, 0.0)


def test_canary_then_rollback_with_an_endpoint_down(settings: Settings, fakes: dict[str, FakeEndpoint]) -> None:
    connect = connector(fakes)
    rollout.promote(settings, "rf", 1, actor="alice", connect=connect)
    rollout.promote(settings, "rf", 2, actor="alice", connect=connect)
    rollout.canary(settings, "rf", 3, 0.2, actor="alice", connect=connect)
    split = fakes["fake-a:8001"].loaded["rf"].parameters["tritonops.canary"].string_value
    assert split == '{"model":"rf__canary","version":3,"weight":0.2}'
    fakes["fake-b:8001"].unreachable = True
    with pytest.raises(FleetApplyError, match=r"desired state saved, but 1 endpoint\(s\) are not there yet"):
        rollout.rollback(settings, "rf", actor="alice", reason="bad canary", connect=connect)
    assert desired_state(settings) == ModelState("rf", 1, None, 0.0)
    assert sorted(fakes["fake-a:8001"].loaded) == ["rf"] and fakes["fake-a:8001"]._versions("rf") == (1,)
    fakes["fake-b:8001"].unreachable = False
    fakes["fake-b:8001"].loaded.clear()  # it came back empty, as a restarted Triton does
    with StateStore.open(settings.state) as store:
        report = reconcile(store, settings.repository, settings.admin_headers(), actor="bob", connect=connect)
    assert report.ok and [len(r.actions) for r in report.endpoints] == [0, 1]
    assert report.endpoints[1].divergence == ["rf: not loaded (want version 1)"]
    status = rollout.status(settings, "rf", connect=connect)
    assert [(s.endpoint, s.models[0].ready_versions, s.models[0].divergence) for s in status] == [
        ("fake-a:8001", (1,), ()),
        ("fake-b:8001", (1,), ()),
    ]
