"""scikit-learn classifiers (and pipelines around them) -> ONNX with skl2onnx, ZipMap off.

Checks what we can serve before exporting: a fitted classifier, an estimator and transformers skl2onnx converts,
int or string classes, a sample whose columns match the training columns.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, is_classifier
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

from tritonops.contract.manifest import ClassLabel, ConverterVersions, Source
from tritonops.contract.names import LABEL_OUTPUT, PROBABILITIES_OUTPUT
from tritonops.converters.boosting import (
    boosting_classifiers,
    catboost_to_onnx,
    exact_boosting,
    for_export,
    is_catboost,
)
from tritonops.converters.errors import (
    ClassesError,
    ExportError,
    NotAClassifierError,
    NotFittedError,
    UnsupportedModelError,
)
from tritonops.converters.features import (
    FeatureLayout,
    align_sample,
    as_frame,
    build_layout,
)
from tritonops.converters.graph import (
    deduplicate_opsets,
    imputers_as_where,
    inputs_as_float32,
    join_stages,
    label_as_column,
    merge_numeric_inputs,
    order_outputs,
    rename_inputs,
    rename_tensor,
)
from tritonops.converters.parity import native_labels
from tritonops.converters.prepared import Predict, PreparedModel
from tritonops.converters.runtime import OnnxClassifier
from tritonops.converters.trees import round_thresholds_down, set_missing_directions
from tritonops.converters.versions import package_version

CLASSIFIERS: tuple[type[BaseEstimator], ...] = (
    LogisticRegression,
    RandomForestClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    DecisionTreeClassifier,
    SVC,
    CalibratedClassifierCV,
    KNeighborsClassifier,
    MLPClassifier,
    GaussianNB,
)
TRANSFORMERS: tuple[type[BaseEstimator], ...] = (
    StandardScaler,
    MinMaxScaler,
    MaxAbsScaler,
    RobustScaler,
    OneHotEncoder,
    OrdinalEncoder,
    SimpleImputer,
    PCA,
    VarianceThreshold,
)
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
"""Opset 17 / IR 8 also loads in the onnxruntime builds of older Triton NGC images."""


def supported_estimators() -> list[str]:
    """Names of the classifiers and the pipeline steps we convert."""
    classes = (*CLASSIFIERS, *boosting_classifiers(), *TRANSFORMERS)
    return [cls.__name__ for cls in classes] + ["Pipeline", "ColumnTransformer"]


def supported_classifiers() -> list[str]:
    """Names of the classifiers we convert (alone or as the last step of a pipeline)."""
    return [cls.__name__ for cls in (*CLASSIFIERS, *boosting_classifiers())]


def _dotted(model: object) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _final_estimator(model: BaseEstimator) -> BaseEstimator:
    return _final_estimator(model.steps[-1][1]) if isinstance(model, Pipeline) else model


def _steps(model: object) -> Iterator[object]:
    """Every estimator inside ``model`` (pipelines and column transformers opened), ``model`` included."""
    yield model
    if isinstance(model, Pipeline):
        for _, step in model.steps:
            yield from _steps(step)
    elif isinstance(model, ColumnTransformer):
        for _, transformer, _ in getattr(model, "transformers_", model.transformers):
            yield from _steps(transformer)
    elif isinstance(model, CalibratedClassifierCV) and model.estimator is not None:
        yield from _steps(model.estimator)


def check_sklearn_model(model: object) -> BaseEstimator:
    """Raise a ``ConversionError`` unless ``model`` is a fitted classifier built from supported parts."""
    if not isinstance(model, BaseEstimator) and not is_catboost(model):
        raise UnsupportedModelError(f"an object of type {_dotted(model)}", supported_estimators())
    if not is_classifier(model):
        final = _final_estimator(model)
        where = f"the last step of the {_dotted(model)}" if final is not model else _dotted(model)
        what = f"{_dotted(final)} ({where})" if final is not model else where
        raise NotAClassifierError(what, "sklearn.base.is_classifier() is False", supported_classifiers())
    try:
        check_is_fitted(model)
    except SklearnNotFittedError as exc:
        raise NotFittedError(_dotted(model)) from exc
    for step in _steps(model):
        if step in ("passthrough", "drop", None) or isinstance(step, Pipeline | ColumnTransformer):
            continue
        if isinstance(step, FunctionTransformer) and step.func is None:  # identity, e.g. remainder="passthrough"
            continue
        if not isinstance(step, CLASSIFIERS + boosting_classifiers() + TRANSFORMERS):
            raise UnsupportedModelError(f"step {_dotted(step)}", supported_estimators())
    if not hasattr(model, "predict_proba"):
        hint = "refit with SVC(probability=True)" if isinstance(_final_estimator(model), SVC) else "no predict_proba"
        raise UnsupportedModelError(
            f"{_dotted(_final_estimator(model))} without class probabilities ({hint})", supported_estimators()
        )
    return model


def model_classes(model: BaseEstimator) -> list[str] | list[int]:
    """The fitted classes as JSON-native str or int values, in probability-column order."""
    classes = np.asarray(model.classes_)
    if classes.ndim != 1:
        raise ClassesError(f"{_dotted(model)} is multi-output (classes_ has shape {classes.shape}); expected 1-D")
    values = classes.tolist()
    if all(isinstance(c, str) for c in values):
        return [str(c) for c in values]
    if classes.dtype.kind in "iu":
        return [int(c) for c in values]
    raise ClassesError(
        f"class labels {values[:5]} have type {classes.dtype}; expected strings or integers "
        "(encode other labels as str or int before fitting)"
    )


def _strict_categories(model: BaseEstimator, columns: list[str]) -> dict[str, list[str]]:
    """Known categories of string columns whose encoder rejects unknown values (``handle_unknown='error'``)."""
    found: dict[str, list[str]] = {}

    def visit(step: object, selected: list[str]) -> None:
        if isinstance(step, Pipeline):
            for _, inner in step.steps:
                visit(inner, selected)
        elif isinstance(step, ColumnTransformer):
            for _, transformer, spec in step.transformers_:
                names = [columns[c] if isinstance(c, int | np.integer) else str(c) for c in np.atleast_1d(spec)]
                visit(transformer, names)
        elif isinstance(step, OneHotEncoder | OrdinalEncoder) and step.handle_unknown == "error":
            for name, categories in zip(selected, step.categories_, strict=False):
                found[name] = [str(c) for c in categories]

    visit(model, columns)
    return found


def _has_named_column_transformer(model: BaseEstimator) -> bool:
    return any(
        isinstance(step, ColumnTransformer)
        and any(isinstance(c, str) for _, _, spec in step.transformers_ for c in np.atleast_1d(spec))
        for step in _steps(model)
    )


ARGMAX_CLASSIFIERS: tuple[type[BaseEstimator], ...] = (
    RandomForestClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    DecisionTreeClassifier,
)
"""Classifiers whose ``predict`` is the arg-max of ``predict_proba`` (and the boosting libraries'): the gate
computes their labels from the probabilities instead of running the model twice."""


def _original_predict(model: BaseEstimator, named: bool) -> Predict:
    final = _final_estimator(model)
    argmax = isinstance(final, ARGMAX_CLASSIFIERS + boosting_classifiers())
    classes = np.asarray(model.classes_, dtype=object)

    def predict(frame: pd.DataFrame) -> tuple[list[ClassLabel], npt.NDArray[np.float64]]:
        data = _original_input(frame, model)
        probabilities = np.asarray(model.predict_proba(data), dtype=np.float64)
        if argmax:
            return native_labels(classes[probabilities.argmax(axis=1)]), probabilities
        return native_labels(model.predict(data)), probabilities

    return predict


def _initial_types(layout: FeatureLayout, per_column: bool, double: bool) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if double else FloatTensorType
    if not per_column:
        return [(layout.inputs[0].name, number([None, len(layout.features)]))]
    return [(f.name, number([None, 1]) if f.dtype == "float" else StringTensorType([None, 1])) for f in layout.features]


def _skl2onnx(model: BaseEstimator, initial_types: list[tuple[str, Any]]) -> onnx.ModelProto:
    options = {"zipmap": False} if is_classifier(model) else None
    from skl2onnx import convert_sklearn

    try:
        with warnings.catch_warnings():
            # skl2onnx passes numpy bools into integer attributes (protobuf deprecates that) and reads SVC's
            # probA_/probB_ (deprecated with probability=True in sklearn 1.9); the exported graph is fine
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            onx: onnx.ModelProto = convert_sklearn(
                model, initial_types=initial_types, options=options, target_opset=TARGET_OPSET
            )
    except Exception as exc:  # skl2onnx raises RuntimeError, KeyError, NotImplementedError, ...
        raise ExportError("skl2onnx", f"{type(exc).__name__}: {exc}") from exc
    deduplicate_opsets(onx)
    return onx


def _exact_trees(estimator: BaseEstimator, onx: onnx.ModelProto) -> None:
    """Make the exported trees compare float32 inputs as the estimator does (module doc of ``trees``)."""
    if isinstance(estimator, HistGradientBoostingClassifier):
        thresholds: dict[int, list[float]] = {}
        for iteration in estimator._predictors:
            for predictor in iteration:
                nodes = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
                for feature, threshold in zip(nodes["feature_idx"], nodes["num_threshold"], strict=True):
                    thresholds.setdefault(int(feature), []).append(float(threshold))
        round_thresholds_down(onx, thresholds)
    elif isinstance(estimator, DecisionTreeClassifier):
        set_missing_directions(onx, [estimator.tree_.missing_go_to_left.astype(bool)])
    elif isinstance(estimator, RandomForestClassifier | ExtraTreesClassifier):
        set_missing_directions(onx, [tree.tree_.missing_go_to_left.astype(bool) for tree in estimator.estimators_])
    else:
        exact_boosting(estimator, onx)


def _estimator_onnx(estimator: BaseEstimator, initial_types: list[tuple[str, Any]]) -> onnx.ModelProto:
    """The estimator alone (or a one-step pipeline): skl2onnx, or CatBoost's own export for CatBoost."""
    final = _final_estimator(estimator)
    if is_catboost(final):
        if len(initial_types) != 1:
            raise ExportError("catboost", "CatBoost exports numeric features only; encode string columns first")
        ((name, tensor_type),) = initial_types
        return catboost_to_onnx(final, name, int(tensor_type.shape[1]))
    onx = _skl2onnx(for_export(estimator), initial_types)
    _exact_trees(final, onx)
    return onx


def _two_stage(model: Pipeline, layout: FeatureLayout, per_column: bool, probe: pd.DataFrame) -> onnx.ModelProto:
    """Preprocessing in float64 then the estimator in float32, as scikit-learn computes them.

    scikit-learn transforms in float64 and its trees cast the result to float32 before comparing it with
    thresholds that sit at training values; computing the preprocessing in float32 instead would send rows
    whose value equals a threshold (common for integer features) down the other branch.
    """
    preprocess, estimator = model[:-1], model.steps[-1][1]
    front = _skl2onnx(preprocess, _initial_types(layout, per_column, double=True))
    imputers_as_where(front)
    width = int(preprocess.transform(_original_input(probe, model)).shape[1])  # dense or sparse
    from skl2onnx.common.data_types import FloatTensorType

    back = _estimator_onnx(estimator, [("features", FloatTensorType([None, width]))])
    return join_stages(front, back, "features")


def _original_input(frame: pd.DataFrame, model: BaseEstimator) -> Any:
    return frame if getattr(model, "feature_names_in_", None) is not None else frame.to_numpy()


def sklearn_to_onnx(model: BaseEstimator, layout: FeatureLayout, probe: pd.DataFrame) -> onnx.ModelProto:
    """Export with skl2onnx (ZipMap off) and give the graph the standard inputs and outputs.

    ``probe``: a few rows in model order, used to learn the width of the preprocessing output.
    """
    per_column = not layout.numeric_only or _has_named_column_transformer(model)
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        onx = _two_stage(model, layout, per_column, layout.model_frame(probe))
    else:
        onx = _estimator_onnx(model, _initial_types(layout, per_column, double=False))
    outputs = [value.name for value in onx.graph.output]
    if len(outputs) != 2:
        raise ExportError("skl2onnx", f"expected a label and a probabilities output, got {outputs}")
    for old, new in zip(outputs, (LABEL_OUTPUT, PROBABILITIES_OUTPUT), strict=True):
        rename_tensor(onx, old, new)
    inputs_as_float32(onx)
    if layout.numeric_only and per_column:
        merge_numeric_inputs(onx, layout.names)
    elif not layout.numeric_only:
        rename_inputs(onx, {f.name: f.tensor for f in layout.features})
    label_as_column(onx)
    order_outputs(onx)
    deduplicate_opsets(onx)
    return onx


def _nan_tolerant(
    model: BaseEstimator, frame: pd.DataFrame, layout: FeatureLayout, onnx_bytes: bytes, named: bool
) -> dict[str, bool]:
    """Numeric features for which the original and the ONNX model both take NaN and agree on the result."""
    predict = _original_predict(model, named)
    onnx_model = OnnxClassifier(onnx_bytes)
    base = layout.model_frame(frame.iloc[:1])
    tolerant: dict[str, bool] = {}
    for feature in layout.features:
        if feature.dtype != "float":
            continue
        row = base.copy()
        row[feature.name] = np.nan
        try:
            labels, probabilities = predict(row)
        except ValueError:  # sklearn refuses NaN: "Input X contains NaN"
            tolerant[feature.name] = False
            continue
        onnx_labels, onnx_probabilities = onnx_model.predict(layout.onnx_feeds(row))
        tolerant[feature.name] = native_labels(onnx_labels) == labels and bool(
            np.allclose(onnx_probabilities, probabilities, atol=1e-4)
        )
    return tolerant


def prepare_sklearn(model: object, sample: pd.DataFrame | npt.ArrayLike) -> PreparedModel:
    """Validate ``model`` against ``sample`` and export it; the parity gate runs next."""
    estimator = check_sklearn_model(model)
    classes = model_classes(estimator)
    names = getattr(estimator, "feature_names_in_", None)
    expected = None if names is None else [str(n) for n in names]
    named = expected is not None
    frame = align_sample(as_frame(sample, expected), expected, int(getattr(estimator, "n_features_in_", 0)))
    strict = _strict_categories(estimator, [str(c) for c in frame.columns])
    draft = build_layout(frame, {}, strict)
    onx = sklearn_to_onnx(estimator, draft, frame.iloc[:2])
    allow_nan = _nan_tolerant(estimator, frame, draft, onx.SerializeToString(), named)
    layout = build_layout(frame, allow_nan, strict)
    source = Source(
        framework="sklearn",
        framework_version=sklearn.__version__,
        estimator=_dotted(_final_estimator(estimator)),
        tritonops_version=package_version("tritonops"),
        converter=ConverterVersions(
            skl2onnx=package_version("skl2onnx"),
            onnx=package_version("onnx"),
            onnxruntime=package_version("onnxruntime"),
        ),
    )
    return PreparedModel(onx, frame, layout, classes, source, _original_predict(estimator, named))
