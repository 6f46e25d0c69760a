"""Reference statistics and the shared bin-assignment function."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from tritonops.contract.bins import assign_bins, bin_labels, reference_proportions
from tritonops.contract.manifest import CategoricalReference, NumericReference
from tritonops.converters.reference import categorical_reference, numeric_reference


def test_numeric_bins_follow_searchsorted_left_with_nan_bin() -> None:
    ref = NumericReference(bin_edges=[1.0, 2.0, 3.0], proportions=[0.25] * 4, nan_proportion=0.0)
    bins = assign_bins(ref, [0.5, 1.0, 1.0001, 2.0, 2.5, 3.0, 3.5, np.nan, -np.inf, np.inf])
    assert bins.tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 0, 3]
    assert bins.dtype == np.int64
    assert bin_labels(ref) == ["0", "1", "2", "3", "nan"]


def test_numeric_reference_quantiles_and_shares() -> None:
    values = np.r_[np.arange(1000, dtype=np.float64), [np.nan] * 250]
    ref = numeric_reference(values, n_bins=4)
    assert len(ref.bin_edges) == 3
    assert ref.bin_edges == sorted(ref.bin_edges)
    assert ref.nan_proportion == pytest.approx(0.2)
    assert ref.proportions == pytest.approx([0.2] * 4)
    assert sum(reference_proportions(ref)) == pytest.approx(1.0)
    # the reference shares are exactly what assign_bins gives on the same data
    counts = np.bincount(assign_bins(ref, values), minlength=5) / values.size
    assert counts.tolist() == pytest.approx(reference_proportions(ref))


def test_numeric_reference_edges_are_float32_and_discrete_values_collapse() -> None:
    ref = numeric_reference([0.0] * 50 + [1.0] * 50, n_bins=10)
    assert ref.bin_edges == [0.0]
    assert ref.proportions == [0.5, 0.5]
    edges = numeric_reference(np.linspace(0.1, 0.9, 101), n_bins=5).bin_edges
    assert all(float(np.float32(e)) == e for e in edges)


def test_categorical_bins_with_other_bucket_and_bytes() -> None:
    ref = CategoricalReference(categories=["red", "green"], proportions=[0.5, 0.4, 0.1])
    bins = assign_bins(ref, np.array([b"red", "green", "blue", None, np.nan, b"green"], dtype=object))
    assert bins.tolist() == [0, 1, 2, 2, 2, 1]
    assert bin_labels(ref) == ["red", "green", "__other__"]


def test_categorical_reference_top_categories() -> None:
    ref = categorical_reference(["a", "b", "a", "c", "a", "b", None], max_categories=2)
    assert ref.categories == ["a", "b"]
    assert ref.proportions == pytest.approx([3 / 7, 2 / 7, 2 / 7])
    fixed = categorical_reference(["x", "y", "x"], categories=["y", "x", "z"])
    assert fixed.proportions == pytest.approx([1 / 3, 2 / 3, 0.0, 0.0])


def test_reference_models_reject_inconsistent_lengths() -> None:
    with pytest.raises(ValidationError, match="proportions"):
        NumericReference(bin_edges=[1.0], proportions=[1.0], nan_proportion=0.0)
    with pytest.raises(ValidationError, match="strictly increasing"):
        NumericReference(bin_edges=[2.0, 1.0], proportions=[0.3, 0.3, 0.4], nan_proportion=0.0)
    with pytest.raises(ValidationError, match="__other__"):
        CategoricalReference(categories=["a"], proportions=[1.0])
