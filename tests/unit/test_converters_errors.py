"""Every conversion failure raises a specific ConversionError and leaves the repository exactly as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.svm import SVC

from examples.data import sensor_frame
from tritonops.converters import (
    ClassesError,
    ConversionError,
    ConversionOptions,
    FeatureMismatchError,
    FeatureNameError,
    NotAClassifierError,
    NotFittedError,
    OnnxRuntimeError,
    ParityError,
    ParityThresholds,
    UnsupportedModelError,
    convert_sklearn,
)
from tritonops.converters.prepared import PreparedModel
from tritonops.converters.sklearn import prepare_sklearn
from tritonops.errors import ExitCode, TritonOpsError


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


@pytest.fixture
def data() -> tuple[pd.DataFrame, pd.Series]:
    dataset = sensor_frame(n_rows=150, n_features=5, seed=4)
    return dataset.frame, dataset.labels


@pytest.fixture
def repository(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> Path:
    """A repository that already holds version 1 of `sensor`."""
    frame, labels = data
    convert_sklearn(LogisticRegression(max_iter=500).fit(frame, labels), frame, name="sensor", repository=tmp_path)
    return tmp_path


def test_zero_threshold_fails_parity_and_writes_nothing(repository: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, labels = data
    model = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=500))]).fit(frame, labels)
    before = _snapshot(repository)
    options = ConversionOptions(thresholds=ParityThresholds(max_prob_diff=0.0))
    with pytest.raises(ParityError) as caught:
        convert_sklearn(model, frame, name="sensor", repository=repository, options=options)
    parity = caught.value.parity
    assert not parity.passed
    assert 0.0 < parity.max_abs_prob_diff < 1e-5  # float32 rounding only, but the threshold is 0
    assert "Worst rows:" in str(caught.value) and f"row {parity.worst_rows[0].row}:" in str(caught.value)
    assert parity.worst_rows[0].prob_diff == parity.max_abs_prob_diff
    assert _snapshot(repository) == before


def test_corrupted_onnx_is_caught_before_writing(
    repository: Path, data: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, labels = data
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    real_prepare = prepare_sklearn

    def corrupting(model: object, sample: pd.DataFrame) -> PreparedModel:
        # fault injection: a broken exporter can't be produced on demand, so damage the graph it returned
        prepared = real_prepare(model, sample)
        prepared.onnx_model.graph.node[0].op_type = "NoSuchOperator"
        return prepared

    monkeypatch.setattr("tritonops.converters.sklearn.prepare_sklearn", corrupting)
    before = _snapshot(repository)
    with pytest.raises(OnnxRuntimeError, match="cannot load the converted model"):
        convert_sklearn(model, frame, name="sensor", repository=repository)
    assert _snapshot(repository) == before


def test_wrong_probabilities_fail_parity_with_label_disagreements(
    repository: Path, data: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, labels = data
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    real_prepare = prepare_sklearn

    def swapped_classes(model: object, sample: pd.DataFrame) -> PreparedModel:
        # fault injection: an exporter that mixes up the class order
        prepared = real_prepare(model, sample)
        table = next(i for i in prepared.onnx_model.graph.node if i.op_type == "LinearClassifier")
        for attribute in table.attribute:
            if attribute.name == "classlabels_strings":
                attribute.strings[:] = list(reversed(attribute.strings))
        return prepared

    monkeypatch.setattr("tritonops.converters.sklearn.prepare_sklearn", swapped_classes)
    before = _snapshot(repository)
    with pytest.raises(ParityError) as caught:
        convert_sklearn(model, frame, name="sensor", repository=repository)
    assert caught.value.parity.label_agreement < 0.9
    assert caught.value.parity.worst_rows[0].label_expected != caught.value.parity.worst_rows[0].label_onnx
    assert _snapshot(repository) == before


def test_unfitted_model(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    with pytest.raises(NotFittedError, match=r"LogisticRegression is not fitted: call fit\(\)"):
        convert_sklearn(LogisticRegression(), data[0], name="m", repository=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_regressor_and_clusterer_are_not_classifiers(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    frame = data[0]
    regressor = LinearRegression().fit(frame, np.arange(len(frame)))
    with pytest.raises(NotAClassifierError, match="LinearRegression is not a classifier"):
        convert_sklearn(regressor, frame, name="m", repository=tmp_path)
    with pytest.raises(NotAClassifierError, match="KMeans"):
        convert_sklearn(KMeans(n_clusters=2, n_init=1).fit(frame), frame, name="m", repository=tmp_path)


def test_unsupported_step_lists_what_is_supported(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, labels = data
    steps = [("scale", StandardScaler()), ("poly", PolynomialFeatures()), ("c", LogisticRegression(max_iter=2000))]
    model = Pipeline(steps).fit(frame, labels)
    with pytest.raises(UnsupportedModelError) as caught:
        convert_sklearn(model, frame, name="m", repository=tmp_path)
    message = str(caught.value)
    assert "PolynomialFeatures" in message
    assert "supported are" in message and "RandomForestClassifier" in message and "OneHotEncoder" in message


def test_svc_without_probabilities(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    with pytest.raises(UnsupportedModelError, match=r"refit with SVC\(probability=True\)"):
        convert_sklearn(SVC().fit(*data), data[0], name="m", repository=tmp_path)


def test_not_an_estimator(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    with pytest.raises(UnsupportedModelError, match=r"builtins\.dict"):
        convert_sklearn({"weights": [1, 2]}, data[0], name="m", repository=tmp_path)


def test_sample_column_mismatches(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, labels = data
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    with pytest.raises(FeatureMismatchError, match=r"missing \['f04'\], unexpected \['extra'\]"):
        convert_sklearn(model, frame.rename(columns={"f04": "extra"}), name="m", repository=tmp_path)
    array_model = LogisticRegression(max_iter=500).fit(frame.to_numpy(), labels)
    with pytest.raises(FeatureMismatchError, match="expects 5 features but the sample has 4 columns"):
        convert_sklearn(array_model, frame.to_numpy()[:, :4], name="m", repository=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_shuffled_sample_columns_are_put_in_model_order(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, labels = data
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    version = convert_sklearn(model, frame[list(reversed(frame.columns))], name="m", repository=tmp_path)
    assert version.manifest.feature_names() == list(frame.columns)


def test_float_class_labels_are_refused(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, labels = data
    model = LogisticRegression(max_iter=500).fit(frame, labels.map({"alpha": 0.0, "beta": 1.0, "gamma": 2.0}))
    with pytest.raises(ClassesError, match="expected strings or integers"):
        convert_sklearn(model, frame, name="m", repository=tmp_path)


def test_colliding_feature_names(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a b": [1.0, 2.0, 3.0, 4.0], "a_b": [0.0, 1.0, 0.0, 1.0], "c": ["x", "y", "x", "y"]})
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    prep = ColumnTransformer([("n", "passthrough", ["a b", "a_b"]), ("s", OneHotEncoder(), ["c"])])
    model = Pipeline([("p", prep), ("c", LogisticRegression())]).fit(frame, ["u", "v", "u", "v"])
    with pytest.raises(FeatureNameError, match="'a b' and 'a_b' both become tensor 'a_b'"):
        convert_sklearn(model, frame, name="m", repository=tmp_path)


def test_every_conversion_error_is_a_tritonops_error() -> None:
    assert issubclass(ConversionError, TritonOpsError)
    assert ConversionError.exit_code == ExitCode.CONVERSION


def test_calibrated_wrapper_around_unsupported(tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import Perceptron

    model = CalibratedClassifierCV(Perceptron(random_state=0), ensemble=False).fit(*data)
    with pytest.raises(UnsupportedModelError, match=r"step sklearn\.linear_model\._perceptron\.Perceptron"):
        convert_sklearn(model, data[0], name="m", repository=tmp_path)
