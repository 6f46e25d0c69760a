"""Drift statistics agree with scipy (and Evidently's documented formulas) on the same binned data, to 1e-9."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance
from scipy.special import rel_entr

from tritonops.contract.bins import bin_labels, reference_proportions
from tritonops.control_plane.drift import (
    PREDICTION,
    BinnedReference,
    DriftConfig,
    Method,
    Rule,
    chi_squared,
    drift_report,
    feature_drift,
    jensen_shannon,
    ks_binned,
    psi,
    psi_band,
)
from tritonops.control_plane.errors import DriftInputError
from tritonops.control_plane.views import DriftView, from_drift
from tritonops.converters.reference import categorical_reference, numeric_reference

RNG = np.random.default_rng(7)


def _random_counts(k: int, total: int) -> np.ndarray:
    return RNG.multinomial(total, RNG.dirichlet(np.ones(k)))


@pytest.mark.parametrize("k", [2, 5, 11, 40])
def test_psi_equals_symmetric_kl_from_scipy(k: int) -> None:
    ref = RNG.dirichlet(np.ones(k)) + 1e-3
    live = RNG.dirichlet(np.ones(k)) + 1e-3
    p, q = ref / ref.sum(), live / live.sum()
    expected = float(np.sum(rel_entr(q, p)) + np.sum(rel_entr(p, q)))
    assert psi(ref, live) == pytest.approx(expected, abs=1e-9)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_psi_fills_empty_bins_like_evidently() -> None:
    # Evidently replaces a zero share by (smallest share / 1e6) when the smallest is <= 1e-4, else by 1e-4,
    # separately in each distribution, without renormalising.
    ref = np.array([0.5, 0.3, 0.2, 0.0])
    live = np.array([40.0, 0.0, 30.0, 30.0]) / 100
    ref_filled = np.array([0.5, 0.3, 0.2, 1e-4])
    live_filled = np.array([0.4, 1e-4, 0.3, 0.3])
    expected = float(np.sum((live_filled - ref_filled) * np.log(live_filled / ref_filled)))
    assert psi(ref, live) == pytest.approx(expected, abs=1e-9)
    tiny = np.array([0.99995, 0.00005, 0.0])
    tiny_filled = np.array([0.99995, 0.00005, 0.00005 / 1e6])
    other = np.array([0.5, 0.25, 0.25])
    expected_tiny = float(np.sum((other - tiny_filled) * np.log(other / tiny_filled)))
    assert psi(tiny, other) == pytest.approx(expected_tiny, abs=1e-9)


def test_psi_bands_follow_the_usual_cut_offs() -> None:
    assert [psi_band(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "significant",
        "significant",
    ]


@pytest.mark.parametrize("k", [2, 6, 30])
def test_jensen_shannon_equals_scipy(k: int) -> None:
    ref = _random_counts(k, 500).astype(float)
    live = _random_counts(k, 80).astype(float)
    live[0] = 0.0  # an empty bin on one side only
    assert jensen_shannon(ref, live) == pytest.approx(float(distance.jensenshannon(ref, live)), abs=1e-9)
    assert jensen_shannon(ref, ref) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(("k", "n", "m"), [(3, 200, 50), (10, 1000, 300), (25, 5000, 4000)])
def test_ks_on_binned_cdf_equals_ks_2samp_on_the_same_binned_data(k: int, n: int, m: int) -> None:
    ref_counts = _random_counts(k, n)
    live_counts = _random_counts(k, m)
    x = np.repeat(np.arange(k), ref_counts)
    y = np.repeat(np.arange(k), live_counts)
    expected = stats.ks_2samp(x, y, method="asymp")
    got = ks_binned(ref_counts / n, live_counts, n, m)
    assert got.statistic == pytest.approx(float(expected.statistic), abs=1e-9)
    assert got.p_value == pytest.approx(float(expected.pvalue), abs=1e-9)


def test_chi_squared_equals_scipy_chisquare() -> None:
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    observed = np.array([15.0, 18.0, 35.0, 32.0])
    expected = stats.chisquare(observed, f_exp=ref * observed.sum())
    got = chi_squared(ref, observed)
    assert got.statistic == pytest.approx(float(expected.statistic), abs=1e-9)
    assert got.p_value == pytest.approx(float(expected.pvalue), abs=1e-9)


def test_chi_squared_is_infinite_when_live_fills_a_bin_the_reference_never_saw() -> None:
    got = chi_squared([0.5, 0.5, 0.0], [10, 10, 1])
    assert got.statistic == math.inf
    assert got.p_value == 0.0


@pytest.mark.parametrize(
    ("reference", "live", "fragment"),
    [
        ([], [1.0], "reference: expected a non-empty list"),
        ([0.5, 0.5], [0.0, 0.0], "live: expected at least one positive entry, got all zeros"),
        ([0.5, -0.1], [1.0, 1.0], "reference: expected finite numbers >= 0"),
        ([0.5, 0.5], [1.0, 1.0, 1.0], "live: expected 2 bins like the reference, got 3 bins"),
    ],
)
def test_bad_distributions_are_refused_with_the_field_named(
    reference: list[float], live: list[float], fragment: str
) -> None:
    with pytest.raises(DriftInputError, match=fragment):
        psi(reference, live)


# -- verdicts over reference bins built by the converter's own functions ---------------------------------------


def _numeric(name: str, values: np.ndarray, rows: int) -> BinnedReference:
    ref = numeric_reference(values)
    return BinnedReference(name, "numeric", tuple(bin_labels(ref)), tuple(reference_proportions(ref)), rows)


def _counts(reference: BinnedReference, values: np.ndarray) -> dict[str, float]:
    from tritonops.contract.bins import assign_bins

    ref = numeric_reference(REFERENCE_DATA[reference.name])
    bins = np.bincount(assign_bins(ref, values), minlength=len(reference.labels))
    return {label: float(c) for label, c in zip(reference.labels, bins, strict=True) if c}


REFERENCE_DATA = {name: RNG.normal(loc, 1.0, 2000) for name, loc in (("a", 0.0), ("b", 5.0), ("c", -3.0))}


def _references() -> list[BinnedReference]:
    refs = [_numeric(name, values, 2000) for name, values in REFERENCE_DATA.items()]
    refs.append(BinnedReference(PREDICTION, "categorical", ("no", "yes"), (0.7, 0.3), 2000))
    return refs


def test_reference_like_traffic_gives_no_drift_and_one_shifted_feature_drifts_alone() -> None:
    refs = _references()
    live = {name: RNG.normal(values.mean(), 1.0, 500) for name, values in REFERENCE_DATA.items()}
    counts = {r.name: _counts(r, live[r.name]) for r in refs if r.name != PREDICTION}
    calm = drift_report("m", 1, refs, counts, {"no": 352, "yes": 148}, DriftConfig(), window_seconds=60)
    assert calm.drifted_features == []
    assert calm.dataset_drift is False
    assert calm.prediction_drift is False
    assert all(f.psi is not None and f.psi < 0.1 for f in calm.features)

    live["b"] = live["b"] + 1.5
    counts["b"] = _counts(refs[1], live["b"])
    shifted = drift_report("m", 1, refs, counts, {"no": 352, "yes": 148}, DriftConfig(), window_seconds=60)
    assert shifted.drifted_features == ["b"]
    b = shifted.features[1]
    assert b.psi is not None and b.psi > 0.25 and b.psi_band == "significant"
    assert b.ks is not None and b.ks.statistic > 0.3
    assert shifted.drifted_share == pytest.approx(1 / 3)
    assert shifted.dataset_drift is False  # 1/3 < 0.5
    lenient = DriftConfig(drift_share=0.3)
    assert drift_report("m", 1, refs, counts, {"no": 352, "yes": 148}, lenient, 60).dataset_drift is True


def test_a_report_survives_the_api_round_trip() -> None:
    """The controller answers the ``DriftView``; the CLI in remote mode reads the same view back."""
    refs = _references()
    live = {name: RNG.normal(values.mean() + 2.0, 1.0, 500) for name, values in REFERENCE_DATA.items()}
    counts = {r.name: _counts(r, live[r.name]) for r in refs if r.name != PREDICTION}
    counts["c"] = {label: 0.0 for label in counts["c"]}  # an empty window for one feature: inf / None values
    report = drift_report("m", 3, refs, counts, {"no": 100, "yes": 400}, DriftConfig(), window_seconds=90)
    data = json.loads(from_drift(report).model_dump_json())
    assert DriftView.model_validate(data) == from_drift(report)


def test_not_enough_rows_never_raises_an_alarm() -> None:
    refs = _references()
    counts = {"a": {"0": 3.0}, "b": {"9": 3.0}, "c": {"nan": 3.0}}
    report = drift_report("m", 1, refs, counts, {"yes": 3}, DriftConfig(min_rows=100), None)
    assert report.enough_data is False
    assert report.drifted_features == []
    assert report.dataset_drift is False
    assert report.features[0].psi is not None and report.features[0].psi > 1  # the statistic is still shown


def test_per_feature_rules_and_p_value_methods() -> None:
    refs = _references()
    counts = {
        name: _counts(r, RNG.normal(REFERENCE_DATA[name].mean() + 0.3, 1.0, 3000))
        for name, r in zip(REFERENCE_DATA, refs, strict=False)
    }
    config = DriftConfig(
        default=Rule(method=Method.PSI, threshold=5.0),
        features={"a": Rule(method=Method.KS), "c": Rule(method=Method.JENSEN_SHANNON, threshold=0.01)},
        prediction=Rule(method=Method.CHISQUARE),
    )
    report = drift_report("m", 1, refs, counts, {"no": 2000, "yes": 1000}, config, 60)
    a, b, c = report.features
    assert (a.method, a.threshold, a.drifted) == (Method.KS, 0.05, True)
    assert a.ks is not None and a.score == a.ks.p_value
    assert (b.method, b.threshold, b.drifted) == (Method.PSI, 5.0, False)
    assert (c.method, c.drifted) == (Method.JENSEN_SHANNON, True)
    assert report.prediction is not None and report.prediction.method is Method.CHISQUARE
    assert report.prediction_drift is True  # 33% "yes" against 30% over 3000 rows


def test_bins_empty_on_both_sides_are_dropped_and_unknown_labels_refused() -> None:
    ref = BinnedReference("f", "categorical", ("x", "y", "z", "__other__"), (0.5, 0.5, 0.0, 0.0), 100)
    got = feature_drift(ref, {"x": 60.0, "y": 40.0}, Rule(), min_rows=10)
    assert got.psi == pytest.approx(psi([0.5, 0.5], [60, 40]), abs=1e-12)
    assert got.chi_squared is not None
    assert got.chi_squared.p_value == pytest.approx(float(stats.chisquare([60, 40], [50, 50]).pvalue), abs=1e-9)
    with pytest.raises(DriftInputError, match=r"bins of 'f': expected labels among .* got unknown labels \['w'\]"):
        feature_drift(ref, {"w": 1.0}, Rule(), min_rows=10)


def test_categorical_reference_from_the_converter_round_trips() -> None:
    values = ["red"] * 50 + ["green"] * 30 + ["blue"] * 20
    ref = categorical_reference(values)
    binned = BinnedReference("colour", "categorical", tuple(bin_labels(ref)), tuple(reference_proportions(ref)), 100)
    same = feature_drift(binned, {"red": 500.0, "green": 300.0, "blue": 200.0}, Rule(), min_rows=10)
    assert same.psi == pytest.approx(0.0, abs=1e-12)
    assert same.drifted is False
    novel = feature_drift(binned, {"red": 500.0, "__other__": 500.0}, Rule(), min_rows=10)
    assert novel.drifted is True
    assert novel.chi_squared is not None and novel.chi_squared.p_value == 0.0


def test_unknown_feature_rule_and_ks_on_categories_are_refused() -> None:
    refs = _references()
    with pytest.raises(DriftInputError, match=r"drift.features: expected feature names among \['a', 'b', 'c'\]"):
        drift_report("m", 1, refs, {}, {}, DriftConfig(features={"zz": Rule()}), None)
    cat = BinnedReference("f", "categorical", ("x", "__other__"), (1.0, 0.0), 10)
    with pytest.raises(DriftInputError, match="ks only for numeric features"):
        feature_drift(cat, {"x": 5.0}, Rule(method=Method.KS), min_rows=1)
