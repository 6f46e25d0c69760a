"""Split thresholds of the tree ensembles inside an ONNX graph: read them, and make float32 comparisons exact.

ONNX ``TreeEnsemble*`` nodes compare a float32 feature with a float32 threshold. A framework that compares
``x <= t`` with a float64 ``t`` (scikit-learn's HistGradientBoosting, LightGBM) sends a float32 ``x`` left exactly
when ``x <= rounddown32(t)``, the largest float32 not above ``t``; exporters that round ``t`` to the nearest
float32 instead can round up past a float32 value the framework sends right. ``round_thresholds_down`` puts the
exact value back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
BRANCH_LEQ = "BRANCH_LEQ"


@dataclass(frozen=True)
class TreeSplits:
    """The float32 thresholds one tree-ensemble node compares each column of its input tensor with."""

    tensor: str
    thresholds: dict[int, npt.NDArray[np.float32]]


def tree_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    for node in model.graph.node:
        if node.op_type in TREE_OPS and node.domain == "ai.onnx.ml":
            yield node


def _attributes(node: onnx.NodeProto) -> dict[str, onnx.AttributeProto]:
    return {a.name: a for a in node.attribute}


def _values(node: onnx.NodeProto) -> npt.NDArray[np.float64]:
    attributes = _attributes(node)
    if "nodes_values_as_tensor" in attributes:
        return np.asarray(onnx.numpy_helper.to_array(attributes["nodes_values_as_tensor"].t), dtype=np.float64)
    return np.asarray(attributes["nodes_values"].floats, dtype=np.float64)


def _modes(node: onnx.NodeProto) -> list[str]:
    return [m.decode() for m in _attributes(node)["nodes_modes"].strings]


def tree_splits(model: onnx.ModelProto) -> list[TreeSplits]:
    """Every tree-ensemble node's thresholds per input column (LEAF entries left out)."""
    found = []
    for node in tree_nodes(model):
        features = np.asarray(_attributes(node)["nodes_featureids"].ints, dtype=np.int64)
        values = _values(node).astype(np.float32)
        branch = np.array([mode != "LEAF" for mode in _modes(node)], dtype=bool)
        thresholds = {
            int(column): np.unique(values[branch & (features == column)]) for column in np.unique(features[branch])
        }
        found.append(TreeSplits(tensor=node.input[0], thresholds=thresholds))
    return found


def round_down32(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The largest float32 not above each float64 value."""
    exact = np.asarray(values, dtype=np.float64)
    nearest = exact.astype(np.float32)
    above = nearest.astype(np.float64) > exact
    return np.where(above, np.nextafter(nearest, np.float32(-np.inf)), nearest).astype(np.float32)


def _zero_range_threshold(threshold: float, zero: float) -> float:
    """The float32 threshold for ``f(x) <= t`` where ``f`` reads ``|x| <= zero`` as 0 (``zero`` a float32)."""
    if threshold < 0:
        return float(np.nextafter(np.float32(-zero), np.float32(-np.inf)))  # zeros go right: only x < -zero left
    return float(np.float32(zero))  # zeros go left, and no x in (t, zero] is above zero


def round_thresholds_down(
    model: onnx.ModelProto, thresholds: Mapping[int, Sequence[float]], zero: float | None = None
) -> int:
    """Replace each ``BRANCH_LEQ`` threshold by ``rounddown32`` of the float64 threshold it stands for.

    ``thresholds``: the framework's float64 thresholds per input column. An ONNX threshold stands for the float64
    thresholds of its column that round to it; when those disagree on the rounded-down value (two thresholds
    within half a float32 ulp of each other, on both sides of it) the node is left as it is and the parity gate's
    threshold rows judge it. ``zero``: the framework reads inputs with ``|x| <= zero`` as 0 (LightGBM's
    ``kZeroThreshold``), so thresholds in ``[-zero, zero)`` move to where 0 sends them. Returns how many changed.
    """
    exact: dict[tuple[int, float], set[float]] = {}
    for column, values in thresholds.items():
        array = np.asarray(values, dtype=np.float64)
        for value, nearest, down in zip(array, array.astype(np.float32), round_down32(array), strict=True):
            target = float(down)
            if zero is not None and -zero <= value < zero:
                target = _zero_range_threshold(float(value), zero)
            exact.setdefault((int(column), float(nearest)), set()).add(target)
    changed = 0
    for node in tree_nodes(model):
        attributes = _attributes(node)
        if "nodes_values_as_tensor" in attributes:
            continue  # float64 thresholds compare exactly already
        features = attributes["nodes_featureids"].ints
        values = list(attributes["nodes_values"].floats)
        for index, mode in enumerate(_modes(node)):
            if mode != BRANCH_LEQ:
                continue
            candidates = exact.get((int(features[index]), float(np.float32(values[index]))))
            if candidates is not None and len(candidates) == 1:
                (down,) = candidates
                if down != float(np.float32(values[index])):
                    values[index] = down
                    changed += 1
        node.attribute.remove(attributes["nodes_values"])
        node.attribute.append(helper.make_attribute("nodes_values", values))
    return changed


def set_missing_directions(model: onnx.ModelProto, go_true: Sequence[npt.NDArray[np.bool_]]) -> None:
    """Send NaN down the true branch of node ``n`` of tree ``t`` exactly when ``go_true[t][n]``.

    For frameworks that store a missing-value direction per node (scikit-learn's trees send NaN to the child that
    saw more training rows when training had none, and exporters leave ONNX's default: NaN compares false).
    """
    for node in tree_nodes(model):
        attributes = _attributes(node)
        trees = attributes["nodes_treeids"].ints
        nodes = attributes["nodes_nodeids"].ints
        modes = _modes(node)
        tracks = [
            int(mode != "LEAF" and bool(go_true[tree][index]))
            for tree, index, mode in zip(trees, nodes, modes, strict=True)
        ]
        if "nodes_missing_value_tracks_true" in attributes:
            node.attribute.remove(attributes["nodes_missing_value_tracks_true"])
        node.attribute.append(helper.make_attribute("nodes_missing_value_tracks_true", tracks))
