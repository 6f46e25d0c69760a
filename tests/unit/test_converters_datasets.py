"""Conversions on real data: scikit-learn's bundled iris, wine, breast_cancer and digits sets.

Each model is trained on a split, converted with the training rows as the parity sample, and then checked on the
held-out rows the converter never saw: exact labels (the original values, strings for iris) and probabilities.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from tritonops.converters import convert_sklearn

DATASETS: dict[str, Callable[[], tuple[pd.DataFrame, pd.Series]]] = {
    # iris with its class *names* as labels: strings must survive the round trip
    "iris": lambda: _frame(load_iris(), names=True),
    "wine": lambda: _frame(load_wine()),
    "breast_cancer": lambda: _frame(load_breast_cancer()),
    "digits": lambda: _frame(load_digits()),
}
ESTIMATORS: dict[str, Callable[[], BaseEstimator]] = {
    "logistic_regression": lambda: LogisticRegression(max_iter=2000),
    "random_forest": lambda: RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=20, max_depth=8, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0),
    "svc": lambda: SVC(probability=True, random_state=0),
    "k_neighbors": lambda: KNeighborsClassifier(n_neighbors=5),
    "mlp": lambda: MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0),
}
# every estimator on iris; a fast, varied trio on the larger sets
CASES = [("iris", kind) for kind in ESTIMATORS] + [
    (dataset, kind)
    for dataset in ("wine", "breast_cancer", "digits")
    for kind in ("logistic_regression", "random_forest", "mlp")
]


def _frame(bunch: object, names: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    data = np.asarray(bunch.data, dtype=np.float64)  # type: ignore[attr-defined]
    target = np.asarray(bunch.target)  # type: ignore[attr-defined]
    columns = [f"x{i:02d}" for i in range(data.shape[1])]
    labels = (
        pd.Series(np.asarray(bunch.target_names, dtype=object)[target], dtype=object)  # type: ignore[attr-defined]
        if names
        else pd.Series(target.astype(np.int64))
    )
    return pd.DataFrame(data, columns=columns), labels


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.mark.parametrize(("dataset", "kind"), CASES)
def test_held_out_rows_match_the_original(dataset: str, kind: str, tmp_path: Path) -> None:
    frame, labels = DATASETS[dataset]()
    train_x, test_x, train_y, _ = train_test_split(frame, labels, test_size=0.3, random_state=0, stratify=labels)
    scale = [] if kind == "hist_gradient_boosting" else [("scale", StandardScaler())]
    model = Pipeline([*scale, ("classify", ESTIMATORS[kind]())])
    with warnings.catch_warnings():  # training the fixture only
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True) is deprecated in sklearn 1.9
        model.fit(train_x, train_y)

    version = convert_sklearn(model, train_x, name=f"{dataset}_{kind}", repository=tmp_path)

    manifest = version.manifest
    assert manifest.parity.passed and manifest.parity.label_agreement == 1.0
    assert manifest.parity.max_abs_prob_diff <= 1e-4
    assert manifest.classes == model.classes_.tolist()
    assert [f.name for f in manifest.features] == list(frame.columns)
    session = ort.InferenceSession(str(version.model_path), providers=["CPUExecutionProvider"])
    held_out = test_x.to_numpy(dtype=np.float32)
    onnx_labels, onnx_probabilities = session.run(["label", "probabilities"], {"input": held_out})
    seen = pd.DataFrame(held_out.astype(np.float64), columns=frame.columns)  # what Triton delivers: float32
    expected = model.predict(seen)
    assert onnx_labels.reshape(-1).tolist() == expected.tolist()
    np.testing.assert_allclose(onnx_probabilities, model.predict_proba(seen), atol=1e-4)
