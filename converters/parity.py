"""The parity gate: the original model and its ONNX conversion must agree on the same rows.

Both sides see the same float32-rounded inputs (Triton delivers FP32); the remaining differences come from the
ONNX operators computing in float32 where scikit-learn computes in float64. Two kinds of rows are *ties*:

- near-tie rows: the original's two highest probabilities are within ``2 * max_prob_diff``; rounding within the
  allowed probability error may pick the other class, so a label disagreement there is not counted (the
  probability difference still is);
- explained boundary rows: the ONNX output differs from the original's at the row but equals (label, and
  probabilities within ``max_prob_diff``) the original's output at a *neighbour* of the row, the row with every
  numeric input moved by a few float32 ulps. Such a row sits exactly on a decision threshold (scikit-learn trees
  put thresholds at training values; HistGradientBoosting compares in float64 where ONNX trees use float32
  thresholds), so float32 resolution can't tell the two sides apart. These rows are left out of both checks,
  having been checked against the neighbour instead.

``tie_rows`` in the manifest counts both kinds; explained boundary rows lead ``worst_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tritonops.contract.manifest import ClassLabel, ParityResult, ParityRow, ParityThresholds

WORST_ROWS = 5
Outputs = tuple[Sequence[ClassLabel], npt.NDArray[np.float64]]


def _native(value: object) -> ClassLabel:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.integer | int):
        return int(value)
    return str(value)


def native_labels(labels: npt.ArrayLike) -> list[ClassLabel]:
    """Labels as JSON-native ``str`` / ``int`` values."""
    return [_native(v) for v in np.asarray(labels, dtype=object).reshape(-1)]


def _top_two_gap(probabilities: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if probabilities.shape[1] < 2:
        return np.full(probabilities.shape[0], np.inf)
    top = np.sort(probabilities, axis=1)[:, -2:]
    return np.asarray(top[:, 1] - top[:, 0], dtype=np.float64)


def check_parity(
    expected_labels: Sequence[ClassLabel],
    expected_probabilities: npt.ArrayLike,
    onnx_labels: Sequence[ClassLabel],
    onnx_probabilities: npt.ArrayLike,
    thresholds: ParityThresholds,
    neighbours: Sequence[Outputs] = (),
) -> ParityResult:
    """Compare the original model's outputs with the ONNX model's on the same rows.

    ``neighbours``: the original's outputs on the same rows moved by a few float32 ulps (see the module doc).
    """
    expected = np.asarray(expected_probabilities, dtype=np.float64)
    actual = np.asarray(onnx_probabilities, dtype=np.float64)
    if expected.shape != actual.shape or len(expected_labels) != len(onnx_labels):
        raise ValueError(f"parity inputs disagree in shape: {expected.shape} vs {actual.shape}")
    rows = expected.shape[0]
    row_diff = np.abs(expected - actual).max(axis=1) if rows else np.zeros(0)
    row_diff = np.where(np.isnan(row_diff), np.inf, row_diff)
    near_tie = _top_two_gap(expected) <= 2 * thresholds.max_prob_diff
    disagree = np.array([a != b for a, b in zip(expected_labels, onnx_labels, strict=True)], dtype=bool)
    off = (disagree & ~near_tie) | (row_diff > thresholds.max_prob_diff)
    explained = np.zeros(rows, dtype=bool)
    for neighbour_labels, neighbour_probabilities in neighbours:
        same_label = np.array([a == b for a, b in zip(neighbour_labels, onnx_labels, strict=True)], dtype=bool)
        close = np.abs(np.asarray(neighbour_probabilities) - actual).max(axis=1) <= thresholds.max_prob_diff
        explained |= same_label & close
    forgiven = off & explained
    counted = disagree & ~near_tie & ~forgiven
    agreement = 1.0 - float(counted.sum()) / rows if rows else 1.0
    checked_diff = row_diff[~forgiven]
    max_diff = float(checked_diff.max()) if checked_diff.size else 0.0
    # worst first: counted disagreements, then the forgiven rows, then by probability difference
    order = np.lexsort((-row_diff, ~disagree, ~forgiven, ~counted)).tolist()  # the last key sorts first
    worst = [
        ParityRow(
            row=i,
            label_expected=expected_labels[i],
            label_onnx=onnx_labels[i],
            prob_diff=float(row_diff[i]),
        )
        for i in order[:WORST_ROWS]
    ]
    return ParityResult(
        passed=rows > 0 and agreement >= thresholds.min_label_agreement and max_diff <= thresholds.max_prob_diff,
        rows=rows,
        label_agreement=agreement,
        max_abs_prob_diff=max_diff,
        tie_rows=int((near_tie | forgiven).sum()),
        thresholds=thresholds,
        worst_rows=worst,
    )
