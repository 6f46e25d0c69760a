"""Every tree family we convert, small, on scikit-learn's bundled data sets and a mixed numeric + string frame.

Used by the exactness tests (ONNX Runtime and the served model must agree with the original on held-out rows and
on rows placed at every split threshold). Models are deliberately small: a few shallow trees each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

from examples.data import CHURN_CATEGORICAL, CHURN_NUMERIC, churn_frame

FAMILIES: dict[str, Callable[[], BaseEstimator]] = {
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0, n_jobs=1),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=8, max_depth=6, random_state=0, n_jobs=1),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=6, max_depth=3, random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=8, random_state=0),
    "lightgbm": lambda: LGBMClassifier(n_estimators=8, num_leaves=8, n_jobs=1, random_state=0, verbose=-1),
    "xgboost": lambda: XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1, random_state=0),
    "catboost": lambda: CatBoostClassifier(
        iterations=8, depth=3, thread_count=1, random_seed=0, verbose=0, allow_writing_files=False
    ),
}
INT_LABELS_ONLY = {"xgboost"}
"""XGBClassifier refuses string labels at fit: it is trained on the label codes 0..k-1."""


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    train_labels: pd.Series
    test_labels: pd.Series


def _bunch(loader: Callable[..., object], names: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    bunch = loader()
    data = np.asarray(bunch.data, dtype=np.float64)  # type: ignore[attr-defined]
    target = np.asarray(bunch.target)  # type: ignore[attr-defined]
    frame = pd.DataFrame(data, columns=[f"x{i:02d}" for i in range(data.shape[1])])
    if names:
        return frame, pd.Series(np.asarray(bunch.target_names, dtype=object)[target], dtype=object)  # type: ignore[attr-defined]
    return frame, pd.Series(target.astype(np.int64))


def _mixed() -> tuple[pd.DataFrame, pd.Series]:
    data = churn_frame(n_rows=400, seed=11)
    return data.frame, pd.Series(data.labels, dtype=object)


DATASETS: dict[str, Callable[[], tuple[pd.DataFrame, pd.Series]]] = {
    "iris": lambda: _bunch(load_iris, names=True),  # class names: string labels
    "wine": lambda: _bunch(load_wine),
    "breast_cancer": lambda: _bunch(load_breast_cancer),
    "digits": lambda: _bunch(load_digits),
    "mixed": _mixed,  # numbers (a few missing) and strings, string labels
}


def split(dataset: str, family: str) -> Split:
    frame, labels = DATASETS[dataset]()
    if family in INT_LABELS_ONLY and labels.dtype == object:
        labels = pd.Series(pd.Categorical(labels).codes.astype(np.int64))
    train, test, train_labels, test_labels = train_test_split(
        frame, labels, test_size=0.25, random_state=0, stratify=labels
    )
    return Split(
        train.reset_index(drop=True),
        test.reset_index(drop=True),
        train_labels.reset_index(drop=True),
        test_labels.reset_index(drop=True),
    )


def model_for(dataset: str, family: str) -> BaseEstimator:
    """The family's estimator; for the mixed frame, the last step of a pipeline that encodes the strings."""
    estimator = FAMILIES[family]()
    if dataset != "mixed":
        return estimator
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    preprocess = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), list(CHURN_NUMERIC)),
            ("categorical", encoder, list(CHURN_CATEGORICAL)),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("classify", estimator)])


def fit(dataset: str, family: str) -> tuple[BaseEstimator, Split]:
    data = split(dataset, family)
    model = model_for(dataset, family)
    model.fit(data.train, data.train_labels)
    return model, data
