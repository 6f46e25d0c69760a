"""The most drifted rows: each row's score is the sum of the PSI terms of the over-filled bins its values fall in."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tritonops.contract.manifest import CategoricalReference, NumericReference
from tritonops.control_plane.drift import (
    PREDICTION,
    BinnedReference,
    DriftConfig,
    DriftReport,
    drift_report,
    psi_terms,
)
from tritonops.control_plane.drift_rows import bin_contributions, most_drifted_rows

NUMERIC = NumericReference(bin_edges=[0.0, 1.0], proportions=[0.25, 0.5, 0.25], nan_proportion=0.0)
COLOUR = CategoricalReference(categories=["red", "blue"], proportions=[0.5, 0.5, 0.0])


def _report() -> DriftReport:
    references = [
        BinnedReference("size", "numeric", ("0", "1", "2", "nan"), (0.25, 0.5, 0.25, 0.0), 400),
        BinnedReference("colour", "categorical", ("red", "blue", "__other__"), (0.5, 0.5, 0.0), 400),
        BinnedReference(PREDICTION, "categorical", ("a", "b"), (0.5, 0.5), 400),
    ]
    counts = {
        "size": {"0": 10.0, "1": 30.0, "2": 60.0},  # the top bin over-filled: 0.6 against 0.25
        "colour": {"red": 50.0, "blue": 40.0, "__other__": 10.0},  # 10% unseen colours against none
    }
    return drift_report("m", 1, references, counts, {"a": 50.0, "b": 50.0}, DriftConfig(min_rows=10), 60.0)


def test_bin_contributions_are_the_psi_terms_of_over_filled_bins_only() -> None:
    size = _report().features[0]
    contributions = bin_contributions(size)
    terms = psi_terms(np.array(size.reference[:3]), np.array(size.live[:3]))
    assert float(terms.sum()) == pytest.approx(size.psi)  # the terms are the PSI's
    assert contributions[2] == pytest.approx((0.6 - 0.25) * math.log(0.6 / 0.25))
    assert contributions[0] == contributions[1] == contributions[3] == 0.0  # under-filled or empty bins


def test_rows_rank_by_the_sum_over_features_and_zero_scores_are_left_out() -> None:
    report = _report()
    size, colour = (bin_contributions(f) for f in report.features)
    rows = [
        {"request_id": "calm", "time": "t0", "label": "a", "feature.size": 0.5, "feature.colour": "red"},
        {"request_id": "big", "time": "t1", "label": "a", "feature.size": 3.0, "feature.colour": "red"},
        {"request_id": "both", "time": "t2", "label": "b", "feature.size": 3.0, "feature.colour": "green"},
        {"request_id": "odd", "time": "t3", "label": "b", "feature.size": None, "feature.colour": "green"},
    ]
    references = {"size": NUMERIC, "colour": COLOUR}
    found = most_drifted_rows(report, references, rows)
    # an unseen colour (10% live, none in the reference) outweighs the over-filled size bin (0.6 vs 0.25)
    assert colour[2] > size[2]
    assert [r.request_id for r in found] == ["both", "odd", "big"]
    both = found[0]
    assert both.score == pytest.approx(size[2] + colour[2])
    assert both.contributions == {"size": pytest.approx(size[2]), "colour": pytest.approx(colour[2])}
    assert both.values == {"size": 3.0, "colour": "green"}
    assert "calm" not in {r.request_id for r in found}  # every value in a bin at or under its reference share
    assert [r.request_id for r in most_drifted_rows(report, references, rows, limit=1)] == ["both"]


def test_a_dropped_column_contributes_nothing_and_a_hashed_one_falls_in_other() -> None:
    report = _report()
    colour = bin_contributions(report.features[1])
    rows = [{"request_id": "h", "time": "t", "label": "a", "feature.colour": "9f86d081884c7d65"}]  # size dropped
    (row,) = most_drifted_rows(report, {"size": NUMERIC, "colour": COLOUR}, rows)
    assert row.contributions == {"colour": pytest.approx(colour[2])} and row.score == pytest.approx(colour[2])
    assert most_drifted_rows(report, {"size": NUMERIC, "colour": COLOUR}, []) == []
