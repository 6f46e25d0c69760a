"""Gradient-boosting libraries outside scikit-learn: LightGBM, XGBoost (through onnxmltools) and CatBoost.

``LGBMClassifier`` and ``XGBClassifier`` are registered with skl2onnx, so they also convert as the last step of a
pipeline; ``CatBoostClassifier`` is exported by CatBoost itself (``catboost_to_onnx``). All three come with the
``boosting`` extra; a library that is not installed is simply not registered, and its models are reported as
unsupported, naming the extra.

How each compares a float32 feature (and what ``exact_boosting`` fixes in the exported graph):

- LightGBM: ``x <= t`` with float64 ``t``, after reading ``|x| <= 1e-35`` as 0; onnxmltools rounds ``t`` to the
  nearest float32, so thresholds are rounded down and those around zero moved to where 0 goes
  (``trees.round_thresholds_down``). NaN goes the node's default direction, which onnxmltools keeps.
- XGBoost: ``x < t`` with float32 ``t``, NaN to the node's default child: exported as it is, exact.
- CatBoost: ``x > border`` with float32 borders, NaN treated per the model's ``nan_mode`` (as the minimum by
  default): CatBoost's own export is exact.
"""

from __future__ import annotations

import copy
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from sklearn.base import BaseEstimator

from tritonops.converters.errors import ExportError
from tritonops.converters.graph import deduplicate_opsets
from tritonops.converters.trees import round_thresholds_down

CATBOOST_OPSET = 17
CATBOOST_IR_VERSION = 8
"""CatBoost writes IR 3 with only the ai.onnx.ml domain; our edits add default-domain nodes (opset 17, IR 8)."""
LIGHTGBM_ZERO = float(np.float32(1e-35))
"""LightGBM's ``kZeroThreshold``: it reads an input with ``|x| <= 1e-35`` (float32) as 0 before comparing."""


@cache
def boosting_classifiers() -> tuple[type[BaseEstimator], ...]:
    """The boosting classifier classes we convert (the installed libraries only)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    found: list[type[BaseEstimator]] = []
    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from lightgbm import LGBMClassifier
    except ImportError:
        pass
    else:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=options,
        )
        found.append(LGBMClassifier)
    try:
        from xgboost import XGBClassifier
    except ImportError:
        pass
    else:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        update_registered_converter(
            XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=options,
        )
        found.append(XGBClassifier)
    found.extend(_catboost())
    return tuple(found)


def _catboost() -> tuple[type[BaseEstimator], ...]:
    try:
        from catboost import CatBoostClassifier
    except ImportError:
        return ()
    return (CatBoostClassifier,)


def is_catboost(estimator: object) -> bool:
    return any(isinstance(estimator, cls) for cls in _catboost())


def _lightgbm_thresholds(estimator: Any) -> dict[int, list[float]]:
    thresholds: dict[int, list[float]] = {}

    def visit(node: dict[str, Any]) -> None:
        if "split_feature" not in node:
            return
        if node.get("decision_type") == "<=":
            thresholds.setdefault(int(node["split_feature"]), []).append(float(node["threshold"]))
        visit(node["left_child"])
        visit(node["right_child"])

    for tree in estimator.booster_.dump_model()["tree_info"]:
        visit(tree["tree_structure"])
    return thresholds


def for_export(estimator: Any) -> Any:
    """The estimator as onnxmltools can read it: XGBoost's tree dump must name features ``f0, f1, ...``."""
    if type(estimator).__name__ == "XGBClassifier" and estimator.get_booster().feature_names is not None:
        exported = copy.deepcopy(estimator)
        exported.get_booster().feature_names = None
        return exported
    return estimator


def exact_boosting(estimator: object, onx: onnx.ModelProto) -> None:
    """Make an exported boosting model compare float32 inputs as its library does (module doc)."""
    if type(estimator).__name__ == "LGBMClassifier" and type(estimator).__module__.startswith("lightgbm"):
        round_thresholds_down(onx, _lightgbm_thresholds(estimator), zero=LIGHTGBM_ZERO)


def catboost_to_onnx(estimator: Any, input_name: str, width: int) -> onnx.ModelProto:
    """CatBoost's own ONNX export of ``estimator`` with one float32 input ``input_name`` ``[N, width]``.

    Returns a graph with outputs ``label`` (the class names) and ``probabilities`` ``[N, n_classes]``.
    CatBoost exports models without categorical features only (encode strings in the pipeline before it).
    """
    from onnx import TensorProto, helper

    with tempfile.TemporaryDirectory(prefix="tritonops-catboost-") as workdir:
        path = Path(workdir) / "model.onnx"
        try:
            estimator.save_model(str(path), format="onnx", export_parameters={"onnx_domain": "ai.catboost"})
        except Exception as exc:  # CatBoostError for categorical features, text features, ...
            raise ExportError("catboost", f"{type(exc).__name__}: {exc}") from exc
        onx = onnx.load(str(path))
    graph = onx.graph
    (source,) = [value.name for value in graph.input]
    for node in graph.node:
        node.input[:] = [input_name if name == source else name for name in node.input]
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, width]))
    _drop_zipmap(onx)
    deduplicate_opsets(onx)
    return onx


def _drop_zipmap(onx: onnx.ModelProto) -> None:
    """Keep the tree ensemble's tensor outputs (label, probabilities) instead of ZipMap's sequence of maps."""
    from onnx import TensorProto, helper

    graph = onx.graph
    (tree,) = [node for node in graph.node if node.op_type == "TreeEnsembleClassifier"]
    label, probabilities = tree.output
    for node in [node for node in graph.node if node.op_type == "ZipMap"]:
        graph.node.remove(node)
    strings = any(a.name == "classlabels_strings" for a in tree.attribute)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(label, TensorProto.STRING if strings else TensorProto.INT64, [None]),
            helper.make_tensor_value_info(probabilities, TensorProto.FLOAT, [None, None]),
        ]
    )
    onx.opset_import.append(helper.make_opsetid("", CATBOOST_OPSET))
    onx.ir_version = max(onx.ir_version, CATBOOST_IR_VERSION)
