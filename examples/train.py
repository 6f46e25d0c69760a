"""Quick, deterministic trainers for the demo models (each well under 2 s on one core).

Every trainer returns ``Trained(model, frame, labels, classes)``: the fitted model, the training features, the
training labels and the class names in the model's output order. torch is imported only by the torch trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from examples.data import CHURN_CATEGORICAL, CHURN_NUMERIC, SENSOR_CLASSES, churn_frame, sensor_frame

if TYPE_CHECKING:
    from torch import nn


class Trained(NamedTuple):
    model: Any
    frame: pd.DataFrame
    labels: pd.Series
    classes: list[Any]


def train_numeric_pipeline(
    estimator: Literal["random_forest", "gradient_boosting"] = "random_forest",
    n_rows: int = 600,
    n_features: int = 16,
    seed: int = 0,
) -> Trained:
    """StandardScaler + RandomForest (50 trees, depth 8) or GradientBoosting on the numeric sensor data."""
    data = sensor_frame(n_rows=n_rows, n_features=n_features, seed=seed)
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "classify",
                RandomForestClassifier(n_estimators=50, max_depth=8, random_state=seed, n_jobs=1)
                if estimator == "random_forest"
                else GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=seed),
            ),
        ]
    )
    model.fit(data.frame, data.labels)
    return Trained(model, data.frame, data.labels, list(model.classes_))


def train_mixed_pipeline(n_rows: int = 800, seed: int = 0) -> Trained:
    """Churn model: impute + scale the numbers, one-hot the strings, logistic regression; labels churn/stay."""
    data = churn_frame(n_rows=n_rows, seed=seed)
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                list(CHURN_NUMERIC),
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CHURN_CATEGORICAL)),
        ]
    )
    model = Pipeline([("preprocess", preprocess), ("classify", LogisticRegression(max_iter=500))])
    model.fit(data.frame, data.labels)
    return Trained(model, data.frame, data.labels, list(model.classes_))


def make_sensor_mlp(input_dim: int, n_classes: int = len(SENSOR_CLASSES), hidden: int = 32) -> nn.Module:
    """The untrained network of ``train_torch_mlp`` (a factory for loading its state dict).

    The first layer is a frozen standardisation (weights ``1/std``, bias ``-mean/std``) filled in by training.
    """
    from torch import nn

    standardize = nn.Linear(input_dim, input_dim)
    standardize.requires_grad_(False)
    return nn.Sequential(standardize, nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def train_torch_mlp(n_rows: int = 600, n_features: int = 16, seed: int = 0, epochs: int = 150) -> Trained:
    """A small MLP on the sensor data; the module returns logits, ``classes`` names its outputs."""
    import torch

    torch.manual_seed(seed)
    data = sensor_frame(n_rows=n_rows, n_features=n_features, seed=seed)
    classes = list(SENSOR_CLASSES)
    x = torch.tensor(data.frame.to_numpy(dtype=np.float32))
    y = torch.tensor(pd.Categorical(data.labels, categories=classes).codes.astype(np.int64))
    model = make_sensor_mlp(n_features, len(classes))
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    with torch.no_grad():
        model[0].weight.copy_(torch.diag(1.0 / std))
        model[0].bias.copy_(-mean / std)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    return Trained(model, data.frame, data.labels, classes)
