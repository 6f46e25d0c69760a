"""The pure parts of the server-side canary split and the shadow mirror (tritonops.serving.routing / .shadow)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tritonops.contract.names import LIVE_ROUTE_KEY, PARAM_CANARY, PARAM_SHADOW, key_position
from tritonops.contract.signature import CanarySplit
from tritonops.serving.errors import ModelConfigError
from tritonops.serving.routing import Routes, ShadowRoute, route_key
from tritonops.serving.scoring import ModelOutputs
from tritonops.serving.shadow import PROB_DIFF_BUCKETS, ShadowMirror, ShadowRunError, ShadowSnapshot, compare


def test_routes_round_trip_through_the_config_parameters() -> None:
    canary = CanarySplit("m__canary", 3, 0.25)
    shadow = ShadowRoute("m__shadow", 4, 0.5)
    routes = Routes.from_parameters(
        {PARAM_CANARY: canary.to_parameters()[PARAM_CANARY], PARAM_SHADOW: shadow.to_parameter()}
    )
    assert routes == Routes(canary, shadow)


def test_weight_or_share_zero_means_no_route() -> None:
    params = {
        PARAM_CANARY: CanarySplit("m__canary", 3, 0.0).to_parameters()[PARAM_CANARY],
        PARAM_SHADOW: ShadowRoute("m__shadow", 4, 0.0).to_parameter(),
    }
    assert Routes.from_parameters(params) == Routes()
    assert Routes.from_parameters({}) == Routes()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "expected JSON {model, version, weight}"),
        ('{"model": "m", "version": 1}', "expected JSON {model, version, weight}"),
        ('{"model": "m", "version": 1, "weight": 1.5}', "weight must lie in [0, 1], got 1.5"),
        ('{"model": "m", "version": 0, "weight": 0.5}', "version must be a whole number >= 1, got 0"),
        ('{"model": "m", "version": 1, "weight": "half"}', "weight must be a number in [0, 1], got 'half'"),
    ],
)
def test_a_bad_canary_parameter_names_the_field(text: str, fragment: str) -> None:
    with pytest.raises(ModelConfigError, match=r"parameter tritonops\.canary") as info:
        Routes.from_parameters({PARAM_CANARY: text})
    assert fragment in str(info.value)


def test_route_key_prefers_the_parameter_then_the_forwarded_header() -> None:
    assert route_key("{}") is None
    assert route_key('{"request_id":"x"}') is None
    assert route_key('{"tritonops-route-key":"h"}') == "h"
    assert route_key('{"tritonops_route_key":"p","tritonops-route-key":"h"}') == "p"
    assert route_key('{"tritonops_route_key":42}') == "42"
    assert route_key('{"tritonops_live_only":true,"tritonops_route_key":"p"}') == LIVE_ROUTE_KEY
    assert not CanarySplit("c", 2, 1.0).to_canary(LIVE_ROUTE_KEY)


def test_sticky_choice_follows_the_key_position_and_a_higher_weight_only_adds_keys() -> None:
    keys = [f"k{i}" for i in range(2000)]
    low = {k for k in keys if CanarySplit("c", 2, 0.2).to_canary(k)}
    high = {k for k in keys if CanarySplit("c", 2, 0.5).to_canary(k)}
    assert low == {k for k in keys if key_position(k) < 0.2}
    assert low < high
    assert 300 < len(low) < 500 and 850 < len(high) < 1150


def test_random_choice_uses_the_draw() -> None:
    route = CanarySplit("c", 2, 0.2)
    assert route.to_canary(None, draw=0.19) and not route.to_canary(None, draw=0.2)
    assert ShadowRoute("s", 2, 1.0).mirrors(draw=0.999) and not ShadowRoute("s", 2, 0.3).mirrors(draw=0.3)


def _prediction(labels: list[int], probabilities: list[list[float]]) -> ModelOutputs:
    return ModelOutputs(np.array(labels).reshape(-1, 1), np.array(probabilities, dtype=np.float32))


def test_compare_counts_agreement_and_buckets_the_max_probability_difference() -> None:
    live = _prediction([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    shadow = _prediction([0, 1, 0], [[0.9, 0.1], [0.22, 0.78], [0.6, 0.4]])
    tally = ShadowSnapshot()
    compare(live, shadow, tally)
    assert (tally.compared, tally.agreed) == (3, 2)
    buckets = dict(zip((*PROB_DIFF_BUCKETS, float("inf")), tally.prob_diff_buckets, strict=True))
    assert buckets[0.0] == 1 and buckets[0.05] == 1 and buckets[0.25] == 1
    assert tally.prob_diff_sum == pytest.approx(0.02 + 0.2, abs=1e-6)


def test_compare_refuses_a_shadow_answer_with_other_rows() -> None:
    with pytest.raises(ShadowRunError) as info:
        compare(_prediction([0, 1], [[1, 0], [0, 1]]), _prediction([0], [[1, 0]]), ShadowSnapshot())
    assert info.value.reason == "bad_output"


def test_mirror_scores_in_the_background_and_drops_when_full() -> None:
    gate, started = threading.Event(), threading.Event()

    def run(batch: dict[str, np.ndarray]) -> ModelOutputs:
        started.set()
        gate.wait(10)
        rows = batch["input"].shape[0]
        return _prediction([1] * rows, [[0.0, 1.0]] * rows)

    mirror = ShadowMirror(run, capacity=2)
    live = _prediction([1, 0], [[0.0, 1.0], [1.0, 0.0]])
    inputs = {"input": np.zeros((2, 3), dtype=np.float32)}
    offered = [mirror.offer(inputs, live)]
    assert started.wait(10)  # the worker holds the first one (blocked): the queue has room for two more
    offered += [mirror.offer(inputs, live) for _ in range(5)]
    assert offered == [True, True, True, False, False, False]
    gate.set()
    assert mirror.drain(10)
    snap = mirror.take()
    kept = offered.count(True)
    assert (snap.mirrored, snap.dropped, snap.compared, snap.agreed) == (2 * kept, 2 * (6 - kept), 2 * kept, kept)
    assert len(snap.latencies) == kept
    mirror.close()


def test_mirror_counts_shadow_failures_by_reason_and_keeps_going() -> None:
    calls = iter([ShadowRunError("unavailable", "gone"), RuntimeError("boom"), None])

    def run(batch: dict[str, np.ndarray]) -> ModelOutputs:
        failure = next(calls)
        if failure is not None:
            raise failure
        return _prediction([1], [[0.0, 1.0]])

    mirror = ShadowMirror(run, capacity=8)
    for _ in range(3):
        assert mirror.offer({"input": np.zeros((1, 3), dtype=np.float32)}, _prediction([1], [[0.0, 1.0]]))
    assert mirror.drain(10)
    snap = mirror.take()
    assert snap.errors == {"unavailable": 1, "rejected": 0, "model_error": 1, "bad_output": 0}
    assert (snap.compared, snap.agreed) == (1, 1)
    mirror.close()
