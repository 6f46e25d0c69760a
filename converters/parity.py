"""The parity gate: the original model and its ONNX conversion must agree on the same rows.

Both sides see the same float32-rounded inputs (Triton delivers FP32); the remaining differences come from the
ONNX operators computing in float32 where scikit-learn computes in float64. Two kinds of rows are *ties*:

- near-tie rows: the original's two highest probabilities are within ``2 * max_prob_diff``; rounding within the
  allowed probability error may pick the other class, so a label disagreement there is not counted (the
  probability difference still is);
- boundary rows: the original model itself jumps (label change or a probability step above ``BOUNDARY_JUMP``)
  when the numeric inputs move by a few float32 ulps. These sit exactly on a decision threshold (scikit-learn
  >= 1.9 trees put thresholds *at* training values, so training rows behind a scaler land there), where float32
  and float64 arithmetic legitimately disagree; they are left out of both checks. At most ``MAX_BOUNDARY_SHARE``
  of the rows may be boundary rows, else the sample can't vouch for the conversion and the gate fails.

``tie_rows`` in the manifest counts both kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from converters.manifest import ClassLabel, ParityResult, ParityRow, ParityThresholds

WORST_ROWS = 5
BOUNDARY_JUMP = 1e-5
MAX_BOUNDARY_SHARE = 0.1


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
    boundary: npt.NDArray[np.bool_] | None = None,
) -> ParityResult:
    """Compare the original model's outputs with the ONNX model's on the same rows (``boundary``: see above)."""
    expected = np.asarray(expected_probabilities, dtype=np.float64)
    actual = np.asarray(onnx_probabilities, dtype=np.float64)
    if expected.shape != actual.shape or len(expected_labels) != len(onnx_labels):
        raise ValueError(f"parity inputs disagree in shape: {expected.shape} vs {actual.shape}")
    rows = expected.shape[0]
    row_diff = np.abs(expected - actual).max(axis=1) if rows else np.zeros(0)
    row_diff = np.where(np.isnan(row_diff), np.inf, row_diff)
    on_boundary = np.zeros(rows, dtype=bool) if boundary is None else np.asarray(boundary, dtype=bool)
    ties = (_top_two_gap(expected) <= 2 * thresholds.max_prob_diff) | on_boundary
    disagree = np.array([a != b for a, b in zip(expected_labels, onnx_labels, strict=True)], dtype=bool)
    counted = disagree & ~ties
    agreement = 1.0 - float(counted.sum()) / rows if rows else 1.0
    checked_diff = row_diff[~on_boundary]
    max_diff = float(checked_diff.max()) if checked_diff.size else 0.0
    # worst first: real disagreements, then tie disagreements, then by probability difference
    order = sorted(range(rows), key=lambda i: (not counted[i], bool(on_boundary[i]), not disagree[i], -row_diff[i]))
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
        tie_rows=int(ties.sum()),
        thresholds=thresholds,
        worst_rows=worst,
    )
