"""The batch fast path of validation: ``InputSchema.validate_all`` agrees with ``validate`` request by request.

``score`` checks a whole dynamic batch at once and falls back to per-request checks only when the batch check
declines, so the fast path must accept exactly the batches whose every request ``validate`` accepts, and hand
ONNX Runtime the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from tritonops.serving.scoring import ModelOutputs, ModelRunError, score
from tritonops.serving.validation import Batch, InputRule, InputSchema, InvalidRequestError

SCHEMA = InputSchema(
    (
        # column 1 may hold NaN (an imputer in front of it), column 0 may not
        InputRule("input", "FP32", ("a", "b"), nan_forbidden=(0,), categories=(None, None)),
        InputRule("plan", "BYTES", ("plan",), nan_forbidden=(), categories=(frozenset({"basic", "pro"}),)),
    )
)
Request = dict[str, npt.NDArray[np.generic] | None]


def good(rows: int, rng: np.random.Generator) -> Request:
    values = rng.normal(size=(rows, 2)).astype(np.float32)
    values[rng.random(rows) < 0.3, 1] = np.nan
    plans = rng.choice(np.array([b"basic", "pro", b"pro"], dtype=object), size=(rows, 1))
    return {"input": values, "plan": plans}


def _set(
    name: str, value: Callable[[npt.NDArray[np.generic]], npt.NDArray[np.generic] | None]
) -> Callable[[Request], Request]:
    def spoil(request: Request) -> Request:
        array = request[name]
        assert array is not None
        return {**request, name: value(array.copy())}

    return spoil


def _put(array: npt.NDArray[np.generic], column: int, value: object) -> npt.NDArray[np.generic]:
    array[-1, column] = value
    return array


SPOILERS: dict[str, Callable[[Request], Request]] = {
    "missing": _set("input", lambda a: None),
    "dtype": _set("input", lambda a: a.astype(np.float64)),
    "one_dimensional": _set("input", lambda a: a.reshape(-1)),
    "no_rows": _set("input", lambda a: a[:0]),
    "feature_count": _set("input", lambda a: np.hstack([a, a])),
    "row_mismatch": _set("plan", lambda a: np.vstack([a, a])),
    "infinite": _set("input", lambda a: _put(a, 1, np.inf)),
    "nan_forbidden": _set("input", lambda a: _put(a, 0, np.nan)),
    "unknown_category": _set("plan", lambda a: _put(a, 0, "enterprise")),
    "not_utf8": _set("plan", lambda a: _put(a, 0, b"\xff")),
    "not_text": _set("plan", lambda a: _put(a, 0, 7)),
    "bytes_dtype": _set("plan", lambda a: a.astype("S")),
}


def _validate_each(requests: list[Request]) -> list[Batch | InvalidRequestError]:
    results: list[Batch | InvalidRequestError] = []
    for request in requests:
        try:
            results.append(SCHEMA.validate(request))
        except InvalidRequestError as exc:
            results.append(exc)
    return results


def test_a_valid_batch_comes_back_as_the_requests_checked_one_by_one() -> None:
    rng = np.random.default_rng(0)
    requests = [good(rows, rng) for rows in (1, 3, 1, 2)]
    whole = SCHEMA.validate_all(requests)
    assert whole is not None and whole.sizes == (1, 3, 1, 2)
    each = _validate_each(requests)
    for name in ("input", "plan"):
        expected = np.concatenate([batch[name] for batch in each if isinstance(batch, dict)])
        got = whole.inputs[name]
        assert got.dtype == expected.dtype and got.shape == (7, expected.shape[1])
        if name == "input":  # NaN where the requests had NaN, the same numbers elsewhere
            np.testing.assert_array_equal(got, expected)
            assert int(np.isnan(got.astype(np.float32)).sum()) > 0
        else:  # bytes decoded to str, as validate does
            assert got.tolist() == expected.tolist() and {type(v) for v in got.ravel().tolist()} == {str}


@pytest.mark.parametrize("spoiler", sorted(SPOILERS))
def test_one_bad_request_makes_the_batch_check_decline(spoiler: str) -> None:
    rng = np.random.default_rng(1)
    requests = [good(2, rng), SPOILERS[spoiler](good(2, rng)), good(1, rng)]
    assert SCHEMA.validate_all(requests) is None
    assert [type(r).__name__ for r in _validate_each(requests)] == ["dict", "InvalidRequestError", "dict"]


def test_batch_check_agrees_with_request_checks_on_random_batches() -> None:
    rng = np.random.default_rng(2)
    names = sorted(SPOILERS)
    declined = 0
    for _ in range(300):
        requests = [good(int(rng.integers(1, 4)), rng) for _ in range(int(rng.integers(1, 6)))]
        for index in np.flatnonzero(rng.random(len(requests)) < 0.1):
            requests[index] = SPOILERS[names[int(rng.integers(len(names)))]](requests[index])
        any_bad = any(isinstance(r, InvalidRequestError) for r in _validate_each(requests))
        whole = SCHEMA.validate_all(requests)
        assert (whole is None) == any_bad
        declined += any_bad
    assert 30 < declined < 270  # both paths were exercised
    assert SCHEMA.validate_all([]) is None


class RowModel:
    """label = row index in the batch it ran in; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, batch: Batch) -> ModelOutputs:
        rows = batch["input"].shape[0]
        self.calls.append(rows)
        probabilities = np.repeat(batch["input"][:, :1], 2, axis=1).astype(np.float32)
        return ModelOutputs(np.arange(rows, dtype=np.int64).reshape(-1, 1), probabilities)


def test_score_gives_each_request_its_own_rows_on_both_paths() -> None:
    rng = np.random.default_rng(3)
    requests = [good(rows, rng) for rows in (2, 1, 3)]
    fast = RowModel()
    scored = score(SCHEMA, fast, requests)
    assert fast.calls == [6]
    labels = [r.label.ravel().tolist() for r in scored.results if isinstance(r, ModelOutputs)]
    assert labels == [[0, 1], [2], [3, 4, 5]]
    for result, request in zip(scored.results, requests, strict=True):
        assert isinstance(result, ModelOutputs) and request["input"] is not None
        assert result.probabilities[:, 0].tolist() == request["input"][:, 0].tolist()
    slow = RowModel()
    mixed = score(SCHEMA, slow, [requests[0], SPOILERS["infinite"](requests[1]), requests[2]])
    assert slow.calls == [5]
    assert [r.label.ravel().tolist() for r in mixed.results if isinstance(r, ModelOutputs)] == [[0, 1], [2, 3, 4]]
    refused = mixed.results[1]
    assert isinstance(refused, InvalidRequestError) and refused.reason == "nan"
    assert refused.message == "input 'input': feature 'b' is infinite at row 0; finite values only [reason: nan]"


def test_a_failing_model_fails_every_request_of_a_valid_batch() -> None:
    def broken(batch: Batch) -> ModelOutputs:
        raise RuntimeError("out of memory")

    rng = np.random.default_rng(4)
    scored = score(SCHEMA, broken, [good(1, rng), good(2, rng)])
    first, second = scored.results
    assert isinstance(first, ModelRunError) and first is second
    assert first.message == "the model failed on a batch of 2 request(s): out of memory"
    assert scored.outputs is None and scored.inputs["input"].shape == (3, 2)
