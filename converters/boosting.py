"""Gradient-boosting libraries outside scikit-learn, converted through onnxmltools when they are installed.

LightGBM's ``LGBMClassifier`` is registered with skl2onnx (so it also works inside pipelines); install it with the
``boosting`` extra. Without the library nothing is registered and such models are reported as unsupported.
"""

from __future__ import annotations

from functools import cache

from sklearn.base import BaseEstimator


@cache
def boosting_classifiers() -> tuple[type[BaseEstimator], ...]:
    """The boosting classifier classes registered with skl2onnx (empty when none is installed)."""
    try:
        from lightgbm import LGBMClassifier
    except ImportError:
        return ()
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    return (LGBMClassifier,)
