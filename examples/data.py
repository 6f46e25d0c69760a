"""Deterministic synthetic data sets for the demo models and the tests (same seed, same rows, everywhere).

- ``sensor_frame``: numeric only, ``f00..fNN`` columns, three string classes (``"alpha"``, ``"beta"``, ``"gamma"``).
- ``churn_frame``: a churn-like customer table mixing numbers (some missing) and strings, labels ``"churn"`` /
  ``"stay"``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

SENSOR_CLASSES = ("alpha", "beta", "gamma")
CHURN_CLASSES = ("churn", "stay")
CHURN_NUMERIC = ("tenure_months", "monthly_charges", "support_calls", "data_gb")
CHURN_CATEGORICAL = ("contract", "payment_method", "internet_service")
_CONTRACTS = ("month-to-month", "one-year", "two-year")
_PAYMENTS = ("card", "bank-transfer", "electronic-check", "mailed-check")
_INTERNET = ("fiber", "dsl", "none")


class Dataset(NamedTuple):
    """Feature columns and the label of every row."""

    frame: pd.DataFrame
    labels: pd.Series


def sensor_frame(n_rows: int = 600, n_features: int = 12, seed: int = 0, sample_seed: int | None = None) -> Dataset:
    """Three Gaussian classes in ``n_features`` dimensions; only the first half of the columns carry signal.

    ``seed`` fixes the distribution (class centres, column units); ``sample_seed`` (default: ``seed``) draws the
    rows, so ``sensor_frame(seed=0, sample_seed=7)`` is fresh data from the distribution a model trained on
    ``sensor_frame(seed=0)`` knows.
    """
    rng = np.random.default_rng(seed)
    n_classes = len(SENSOR_CLASSES)
    centers = rng.normal(0.0, 1.5, size=(n_classes, n_features))
    centers[:, n_features // 2 :] = 0.0
    scales = rng.uniform(0.5, 20.0, size=n_features)  # different units per column, so scaling matters
    rows = rng if sample_seed is None else np.random.default_rng(sample_seed)
    target = rows.integers(0, n_classes, size=n_rows)
    values = (centers[target] + rows.normal(0.0, 1.0, size=(n_rows, n_features))) * scales
    columns = [f"f{i:02d}" for i in range(n_features)]
    labels = pd.Series(np.asarray(SENSOR_CLASSES, dtype=object)[target], name="label", dtype=object)
    return Dataset(pd.DataFrame(values, columns=columns), labels)


def churn_frame(n_rows: int = 800, seed: int = 0, missing_rate: float = 0.03) -> Dataset:
    """Customers with tenure, charges, calls, usage (a few values missing) and three categorical attributes."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(_CONTRACTS, size=n_rows, p=[0.55, 0.25, 0.20])
    payment = rng.choice(_PAYMENTS, size=n_rows, p=[0.3, 0.25, 0.3, 0.15])
    internet = rng.choice(_INTERNET, size=n_rows, p=[0.45, 0.4, 0.15])
    tenure = rng.integers(1, 73, size=n_rows).astype(np.float64)
    monthly = np.round(rng.normal(65.0, 20.0, size=n_rows).clip(18.0, 120.0), 2)
    calls = rng.poisson(1.5, size=n_rows).astype(np.float64)
    data_gb = np.round(rng.gamma(2.0, 40.0, size=n_rows), 1)
    logit = (
        -0.6
        + 1.4 * (contract == "month-to-month")
        - 1.0 * (contract == "two-year")
        + 0.7 * (payment == "electronic-check")
        + 0.5 * (internet == "fiber")
        - 0.045 * tenure
        + 0.02 * (monthly - 65.0)
        + 0.45 * calls
    )
    churn = rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "support_calls": calls,
            "data_gb": data_gb,
            "contract": pd.Series(contract, dtype=object),
            "payment_method": pd.Series(payment, dtype=object),
            "internet_service": pd.Series(internet, dtype=object),
        }
    )
    for column in ("monthly_charges", "data_gb"):
        frame.loc[rng.random(n_rows) < missing_rate, column] = np.nan
    labels = pd.Series(np.where(churn, *CHURN_CLASSES), name="label", dtype=object)
    return Dataset(frame, labels)
