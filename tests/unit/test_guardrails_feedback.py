"""Ground truth by request id: accuracy per version and the canary-vs-live significance test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tritonops.control_plane.errors import FeedbackError
from tritonops.control_plane.feedback import (
    FeedbackStore,
    accuracy_report,
    record_feedback,
    record_prediction,
    two_proportion_z,
)


def test_accuracy_per_version_from_predictions_and_labels(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    for i in range(10):
        record_prediction(f"r{i}", "churn", 1 if i < 6 else 2, "yes" if i % 2 else "no", path=db)
    for i in range(8):  # r8, r9 never get a label
        record_feedback(f"r{i}", "yes", path=db)
    record_feedback("r0", "no", path=db)  # a corrected label replaces the first one
    report = {a.version: a for a in accuracy_report("churn", path=db)}
    assert (report[1].predictions, report[1].labelled, report[1].correct) == (6, 6, 4)
    assert report[1].accuracy == pytest.approx(4 / 6)
    assert (report[2].predictions, report[2].labelled, report[2].correct) == (4, 2, 1)
    assert accuracy_report("other", path=db) == []


def test_integer_classes_are_compared_as_text(tmp_path: Path) -> None:
    with FeedbackStore(tmp_path / "s.db") as store:
        store.record_prediction("a", "digits", 3, 7)
        store.record_feedback("a", 7)
        assert store.accuracy_report("digits")[0].correct == 1


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda s: s.record_feedback("nope", "yes"), "request_id 'nope': no prediction recorded for it"),
        (lambda s: s.record_prediction("", "m", 1, "x"), "request_id: expected a non-empty string"),
        (lambda s: s.record_prediction("r", "m", 0, "x"), "version: expected a version number >= 1, got 0"),
        (lambda s: s.record_prediction("r", "m", 1, 1.5), r"label: expected a class name \(str\) or class number"),
        (lambda s: s.record_prediction("dup", "m", 1, "x"), "a prediction is already recorded for it"),
    ],
)
def test_bad_feedback_is_refused_and_nothing_changes(tmp_path: Path, call, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with FeedbackStore(tmp_path / "s.db") as store:
        store.record_prediction("dup", "m", 1, "x")
        with pytest.raises(FeedbackError, match=fragment):
            call(store)
        assert [(a.predictions, a.labelled) for a in store.accuracy_report("m")] == [(1, 0)]


def test_z_test_agrees_with_scipy_chi_squared_on_the_2x2_table() -> None:
    result = two_proportion_z(correct_a=430, n_a=500, correct_b=160, n_b=200)
    assert result is not None
    z, worse, two_sided = result
    table = np.array([[430, 70], [160, 40]])
    chi2 = stats.chi2_contingency(table, correction=False)
    assert z**2 == pytest.approx(float(chi2.statistic), abs=1e-9)
    assert two_sided == pytest.approx(float(chi2.pvalue), abs=1e-9)
    assert worse == pytest.approx(two_sided / 2, abs=1e-12)  # b (0.80) is below a (0.86)
    assert two_proportion_z(0, 0, 1, 1) is None
    assert two_proportion_z(10, 10, 5, 5) is None  # everyone right: no spread, no test


def test_canary_comparison_needs_enough_labels(tmp_path: Path) -> None:
    with FeedbackStore(tmp_path / "s.db") as store:
        rng = np.random.default_rng(0)
        for i in range(300):
            version = 1 if i < 200 else 2
            right = rng.random() < (0.9 if version == 1 else 0.6)
            store.record_prediction(f"q{i}", "m", version, "a")
            store.record_feedback(f"q{i}", "a" if right else "b")
        comparison = store.compare_accuracy("m", live=1, canary=2, min_labels=50)
        assert comparison.enough_labels
        assert comparison.canary_worse(alpha=0.05)
        assert comparison.p_value_worse is not None and comparison.p_value_worse < 1e-6
        strict = store.compare_accuracy("m", live=1, canary=2, min_labels=150)
        assert not strict.enough_labels and not strict.canary_worse(alpha=0.05)


def test_a_batch_of_predictions_is_recorded_whole_or_not_at_all(tmp_path: Path) -> None:
    with FeedbackStore(tmp_path / "s.db") as store:
        assert store.record_predictions("m", 2, [(f"b{i}", "x") for i in range(300)]) == 300
        with pytest.raises(FeedbackError, match="already recorded; nothing was recorded"):
            store.record_predictions("m", 2, [("new-1", "x"), ("b7", "x")])
        with pytest.raises(FeedbackError, match="request_id: expected a non-empty string"):
            store.record_predictions("m", 2, [("new-2", "x"), ("", "x")])
        assert [(a.version, a.predictions) for a in store.accuracy_report("m")] == [(2, 300)]
