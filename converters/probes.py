"""Rows the parity gate generates beyond the user's sample, in groups it reports separately.

- ``thresholds`` (tree models): sample rows with one feature set to a split threshold of the converted trees or
  to the float32 value just below or above it, for every threshold of every feature the trees read unchanged
  from the input (directly, or through pipeline steps that pass the column through);
- ``range``: sample rows with one numeric feature at its observed minimum or maximum;
- ``float32-extremes``: sample rows with one numeric feature at -3.4028235e38 or +3.4028235e38;
- ``missing``: sample rows with one feature set to NaN, for the features the model accepts NaN for.

Each probe row starts from a sample row (cycling through them) so it follows paths real rows take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper

from tritonops.contract.names import NUMERIC_INPUT
from tritonops.converters.features import FeatureLayout
from tritonops.converters.runtime import OnnxClassifier
from tritonops.converters.trees import tree_splits

GroupName = Literal["thresholds", "range", "float32-extremes", "missing"]
EXTREME_BASE_ROWS = 8
"""Sample rows each extreme value is put into."""
_MAPPING_ROWS = 256
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ProbeGroup:
    name: GroupName
    rows: pd.DataFrame
    """Rows in model order (numbers already float32-valued)."""


def _around(thresholds: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Each threshold and the float32 values next to it, unique and finite."""
    values = np.concatenate(
        [
            np.nextafter(thresholds, np.float32(-np.inf)),
            thresholds,
            np.nextafter(thresholds, np.float32(np.inf)),
        ]
    )
    finite: npt.NDArray[np.float64] = np.unique(values[np.isfinite(values)]).astype(np.float64)
    return finite


def _tree_inputs(
    model: onnx.ModelProto, tensors: list[str], feeds: dict[str, npt.NDArray[np.generic]]
) -> list[npt.NDArray[np.float64]]:
    """The values of the tree ensembles' input tensors on ``feeds`` (the model with those tensors as outputs)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {value.name for value in probe.graph.output}
    for tensor in tensors:
        if tensor not in known:
            probe.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    session = OnnxClassifier.session(probe.SerializeToString())
    return [np.asarray(v, dtype=np.float64) for v in session.run(tensors, dict(feeds))]


def _column_features(
    model: onnx.ModelProto, layout: FeatureLayout, frame: pd.DataFrame, tensors: list[str]
) -> list[dict[int, str]]:
    """For each tree input tensor: its columns that carry a raw numeric feature unchanged -> that feature."""
    numeric = [f.name for f in layout.features if f.dtype == "float"]
    if layout.numeric_only and all(t == NUMERIC_INPUT for t in tensors):
        return [dict(enumerate(layout.names)) for _ in tensors]
    rows = frame.iloc[:_MAPPING_ROWS]
    values = _tree_inputs(model, tensors, layout.onnx_feeds(rows))
    mappings = []
    for matrix in values:
        mapping: dict[int, str] = {}
        for column in range(matrix.shape[1] if matrix.ndim == 2 else 0):
            for name in numeric:
                raw = rows[name].to_numpy(dtype=np.float64)
                present = ~np.isnan(raw)
                if np.unique(raw[present]).size > 1 and np.array_equal(matrix[present, column], raw[present]):
                    mapping[column] = name
                    break
        mappings.append(mapping)
    return mappings


def _substitute(base: pd.DataFrame, feature: str, values: npt.NDArray[np.float64], per_value: int) -> pd.DataFrame:
    """``per_value`` base rows (cycling) for each value, with ``feature`` set to it."""
    count = len(values) * per_value
    rows = base.iloc[np.arange(count) % len(base)].reset_index(drop=True)
    rows[feature] = np.repeat(values, per_value)
    return rows


def threshold_rows(model: onnx.ModelProto, layout: FeatureLayout, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The ``thresholds`` group, or None when the model has no tree that reads a raw feature."""
    splits = tree_splits(model)
    if not splits or frame.empty:
        return None
    mappings = _column_features(model, layout, frame, [s.tensor for s in splits])
    values: dict[str, list[npt.NDArray[np.float64]]] = {}
    for split, mapping in zip(splits, mappings, strict=True):
        for column, thresholds in split.thresholds.items():
            if column in mapping:
                values.setdefault(mapping[column], []).append(_around(thresholds))
    if not values:
        return None
    blocks = [_substitute(frame, name, np.unique(np.concatenate(parts)), 1) for name, parts in values.items()]
    return pd.concat(blocks, ignore_index=True)


def _pushed(
    layout: FeatureLayout, frame: pd.DataFrame, picks: Callable[[npt.NDArray[np.float64]], list[float]]
) -> pd.DataFrame | None:
    numeric = [f.name for f in layout.features if f.dtype == "float"]
    if not numeric or frame.empty:
        return None
    base = frame.iloc[:EXTREME_BASE_ROWS]
    blocks = []
    for name in numeric:
        column = frame[name].to_numpy(dtype=np.float64)
        values = picks(column[~np.isnan(column)])
        if values:
            blocks.append(_substitute(base, name, np.unique(np.asarray(values)), len(base)))
    return pd.concat(blocks, ignore_index=True) if blocks else None


def range_rows(layout: FeatureLayout, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The ``range`` group (each numeric feature at its observed minimum and maximum)."""
    return _pushed(
        layout, frame, lambda observed: [float(observed.min()), float(observed.max())] if observed.size else []
    )


def float32_extreme_rows(layout: FeatureLayout, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The ``float32-extremes`` group (each numeric feature at the largest negative and positive float32)."""
    return _pushed(layout, frame, lambda _: [-_F32_MAX, _F32_MAX])


def missing_rows(layout: FeatureLayout, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The ``missing`` group (NaN in each feature that accepts it)."""
    accepting = [f.name for f in layout.features if f.dtype == "float" and f.allow_nan]
    if not accepting or frame.empty:
        return None
    base = frame.iloc[:EXTREME_BASE_ROWS]
    return pd.concat([_substitute(base, name, np.array([np.nan]), len(base)) for name in accepting], ignore_index=True)


def probe_groups(model: onnx.ModelProto, layout: FeatureLayout, frame: pd.DataFrame) -> list[ProbeGroup]:
    """The generated groups for ``model`` around ``frame`` (model-order rows), empty groups left out."""
    groups: list[tuple[GroupName, pd.DataFrame | None]] = [
        ("thresholds", threshold_rows(model, layout, frame)),
        ("range", range_rows(layout, frame)),
        ("float32-extremes", float32_extreme_rows(layout, frame)),
        ("missing", missing_rows(layout, frame)),
    ]
    return [ProbeGroup(name, rows) for name, rows in groups if rows is not None and not rows.empty]
