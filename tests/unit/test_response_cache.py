"""The backend's response cache: keys from validated inputs, LRU bounds, and ``score`` storing only successes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from tritonops.serving.errors import ModelConfigError
from tritonops.serving.response_cache import ResponseCache, request_key
from tritonops.serving.scoring import ModelOutputs, ModelRunError, score
from tritonops.serving.validation import Batch, InputRule, InputSchema, InvalidRequestError

SCHEMA = InputSchema(
    (
        InputRule("input", "FP32", ("a", "b"), nan_forbidden=(0, 1), categories=(None, None)),
        InputRule("plan", "BYTES", ("plan",), nan_forbidden=(), categories=(frozenset({"basic", "pro"}),)),
    )
)


class CountingModel:
    """label = row sum > 0; counts the rows it runs."""

    def __init__(self) -> None:
        self.rows_run = 0

    def __call__(self, batch: Batch) -> ModelOutputs:
        x = batch["input"].astype(np.float32)
        self.rows_run += x.shape[0]
        positive = x.sum(axis=1) > 0
        return ModelOutputs(
            positive.astype(np.int64).reshape(-1, 1), np.stack([~positive, positive], 1).astype(np.float32)
        )


def request(values: list[list[float]], plans: list[str]) -> dict[str, npt.NDArray[np.generic] | None]:
    return {
        "input": np.asarray(values, dtype=np.float32),
        "plan": np.asarray([[p.encode()] for p in plans], dtype=object),
    }


def key_of(values: list[list[float]], plans: list[str]) -> bytes:
    return request_key(SCHEMA.validate(request(values, plans)))


def test_keys_differ_by_values_shape_and_strings_and_agree_for_equal_requests() -> None:
    base = key_of([[1.0, 2.0]], ["pro"])
    assert key_of([[1.0, 2.0]], ["pro"]) == base
    assert key_of([[1.0, 2.5]], ["pro"]) != base
    assert key_of([[1.0, 2.0]], ["basic"]) != base
    assert key_of([[1.0, 2.0], [1.0, 2.0]], ["pro", "pro"]) != key_of([[1.0, 2.0]], ["pro"])
    # strings are length-prefixed: ("ab", "c") and ("a", "bc") are different requests
    two = InputSchema((InputRule("s", "BYTES", ("x", "y"), nan_forbidden=(), categories=(None, None)),))
    first = two.validate({"s": np.asarray([[b"ab", b"c"]], dtype=object)})
    second = two.validate({"s": np.asarray([[b"a", b"bc"]], dtype=object)})
    assert request_key(first) != request_key(second)


def test_lru_keeps_the_most_recently_used_entries_within_capacity() -> None:
    cache: ResponseCache[str] = ResponseCache(2)
    cache.put(b"a", "A")
    cache.put(b"b", "B")
    assert cache.get(b"a") == "A"  # a is now more recent than b
    cache.put(b"c", "C")
    assert len(cache) == 2
    assert cache.get(b"b") is None
    assert (cache.get(b"a"), cache.get(b"c")) == ("A", "C")


def test_capacity_below_one_is_refused() -> None:
    with pytest.raises(ModelConfigError, match="expected at least 1 entry, got 0"):
        ResponseCache(0)


def test_score_answers_repeats_from_the_cache_with_the_uncached_answer() -> None:
    model = CountingModel()
    cache: ResponseCache[ModelOutputs] = ResponseCache(8)
    repeated = request([[1.0, 2.0], [-5.0, 1.0]], ["pro", "basic"])
    first = score(SCHEMA, model, [repeated], cache)
    assert (len(first.cached), first.cache_misses, model.rows_run) == (0, 1, 2)
    second = score(SCHEMA, model, [repeated, request([[3.0, 3.0]], ["pro"])], cache)
    assert (len(second.cached), second.cache_misses, model.rows_run) == (1, 1, 3)
    uncached = first.results[0]
    hit = second.results[0]
    assert isinstance(uncached, ModelOutputs) and isinstance(hit, ModelOutputs)
    assert hit.label.tolist() == uncached.label.tolist() == [[1], [0]]
    np.testing.assert_array_equal(hit.probabilities, uncached.probabilities)
    # drift sees every answered row: the cached two first, then the one that ran
    served = second.served()
    assert served is not None
    inputs, labels = served
    assert inputs["input"].tolist() == [[1.0, 2.0], [-5.0, 1.0], [3.0, 3.0]]
    assert inputs["plan"].tolist() == [["pro"], ["basic"], ["pro"]]
    assert labels.reshape(-1).tolist() == [1, 0, 1]


def test_a_cached_entry_owns_its_memory() -> None:
    cache: ResponseCache[ModelOutputs] = ResponseCache(8)
    scored = score(SCHEMA, CountingModel(), [request([[1.0, 2.0]], ["pro"]), request([[-1.0, -2.0]], ["pro"])], cache)
    assert scored.outputs is not None
    scored.outputs.label[:] = 7  # whatever happens to the batch's outputs later
    stored = cache.get(key_of([[1.0, 2.0]], ["pro"]))
    assert stored is not None and stored.label.tolist() == [[1]]


def test_invalid_requests_are_refused_every_time_and_never_stored() -> None:
    model = CountingModel()
    cache: ResponseCache[ModelOutputs] = ResponseCache(8)
    bad = request([[float("nan"), 1.0]], ["pro"])
    for _ in range(3):
        scored = score(SCHEMA, model, [bad], cache)
        (result,) = scored.results
        assert isinstance(result, InvalidRequestError) and result.reason == "nan"
        assert (scored.cached, scored.cache_misses, scored.served()) == ((), 0, None)
    assert len(cache) == 0 and model.rows_run == 0


def test_model_failures_are_not_stored() -> None:
    def broken(batch: Batch) -> ModelOutputs:
        raise RuntimeError("device lost")

    cache: ResponseCache[ModelOutputs] = ResponseCache(8)
    good = request([[1.0, 2.0]], ["pro"])
    for _ in range(2):
        scored = score(SCHEMA, broken, [good], cache)
        assert isinstance(scored.results[0], ModelRunError) and scored.cache_misses == 1
    assert len(cache) == 0
    assert isinstance(score(SCHEMA, CountingModel(), [good], cache).results[0], ModelOutputs)
    assert len(cache) == 1
