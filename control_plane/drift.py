"""Drift statistics: live bin counts against the manifest's reference, as plain functions over plain data.

Every statistic works on one binned distribution (the reference bins of ``tritonops.converters.reference``):

- PSI, ``sum((live - ref) * ln(live / ref))``, empty bins filled the way Evidently fills them (below), bands
  0.1 / 0.25;
- Jensen-Shannon distance (natural log, the square root of the divergence, as ``scipy.spatial.distance``);
- Kolmogorov-Smirnov on the binned CDF for numbers (ordered bins, NaN left out), with the asymptotic two-sample
  p-value ``scipy.stats.ks_2samp(method="asymp")`` gives on the same binned data;
- chi-squared of the live counts against the reference proportions (``scipy.stats.chisquare``).

Bins empty in both distributions carry no information and are dropped before any statistic, as Evidently builds its
bins from the values it saw. Defaults follow Evidently: PSI with threshold 0.1 for every feature and the class mix
(drift when ``psi >= threshold``); p-value methods (``ks``, ``chisquare``) drift when ``p <= threshold`` / ``p <
threshold`` with 0.05; dataset drift when the share of drifted features is ``>= 0.5``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from tritonops.contract.bins import NAN_BIN_LABEL, bin_labels, reference_proportions
from tritonops.contract.manifest import CategoricalReference, Manifest, NumericReference
from tritonops.control_plane.errors import DriftInputError
from tritonops.errors import ConfigurationError

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
PREDICTION = "__prediction__"
"""The pseudo-feature name under which the class mix is reported."""

FloatArray = npt.NDArray[np.float64]


class Method(StrEnum):
    """The statistic that decides a feature's verdict."""

    PSI = "psi"
    JENSEN_SHANNON = "jensenshannon"
    KS = "ks"
    CHISQUARE = "chisquare"

    @property
    def default_threshold(self) -> float:
        return 0.05 if self in (Method.KS, Method.CHISQUARE) else 0.1

    @property
    def is_p_value(self) -> bool:
        return self in (Method.KS, Method.CHISQUARE)


# -- the statistics ---------------------------------------------------------------------------------------------


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, what: str = "--window") -> float:
    """``90``, ``30s``, ``15m``, ``2h``, ``1d`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None or float(match[1]) <= 0:
        raise ConfigurationError(f"{what}: expected a positive duration such as 30s, 15m or 2h, got {text!r}")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _as_distribution(values: Sequence[float] | FloatArray, what: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise DriftInputError(what, "a non-empty list of numbers", f"shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise DriftInputError(what, "finite numbers >= 0", f"{array.tolist()}")
    total = float(array.sum())
    if total <= 0:
        raise DriftInputError(what, "at least one positive entry", "all zeros")
    return array / total


def _check_same_length(reference: FloatArray, live: FloatArray) -> None:
    if reference.size != live.size:
        raise DriftInputError("live", f"{reference.size} bins like the reference", f"{live.size} bins")


def _fill_empty(proportions: FloatArray) -> FloatArray:
    """Replace zero shares by a tiny one (Evidently: min share / 1e6 when that is <= 1e-4, else 1e-4)."""
    smallest = float(proportions[proportions > 0].min())
    filler = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return np.where(proportions == 0, filler, proportions)


def psi_terms(reference: Sequence[float] | FloatArray, live: Sequence[float] | FloatArray) -> FloatArray:
    """Each bin's term ``(live - ref) * ln(live / ref)`` of the PSI (every term >= 0; they sum to ``psi``)."""
    ref = _as_distribution(reference, "reference")
    cur = _as_distribution(live, "live")
    _check_same_length(ref, cur)
    ref, cur = _fill_empty(ref), _fill_empty(cur)
    return np.asarray((cur - ref) * np.log(cur / ref), dtype=np.float64)


def psi(reference: Sequence[float] | FloatArray, live: Sequence[float] | FloatArray) -> float:
    """Population stability index of two binned distributions (counts or shares; each is normalised)."""
    return float(np.sum(psi_terms(reference, live)))


def psi_band(value: float) -> str:
    """``stable`` below 0.1, ``moderate`` below 0.25, ``significant`` above."""
    if value < PSI_MODERATE:
        return "stable"
    return "moderate" if value < PSI_SIGNIFICANT else "significant"


def jensen_shannon(reference: Sequence[float] | FloatArray, live: Sequence[float] | FloatArray) -> float:
    """Jensen-Shannon distance (natural log): ``sqrt((KL(p||m) + KL(q||m)) / 2)`` with ``m = (p + q) / 2``."""
    p = _as_distribution(reference, "reference")
    q = _as_distribution(live, "live")
    _check_same_length(p, q)
    m = (p + q) / 2.0

    def kl(a: FloatArray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    divergence = max((kl(p) + kl(q)) / 2.0, 0.0)
    return math.sqrt(divergence)


@dataclass(frozen=True)
class TestResult:
    """A statistic and its p-value."""

    statistic: float
    p_value: float


def ks_binned(
    reference: Sequence[float] | FloatArray, live: Sequence[float] | FloatArray, reference_rows: float, live_rows: float
) -> TestResult:
    """Two-sample Kolmogorov-Smirnov on ordered bins: the largest CDF gap and its asymptotic p-value.

    ``reference_rows`` and ``live_rows`` are the sample sizes behind the two distributions; the p-value is
    ``kstwo.sf(D, round(n * m / (n + m)))``, what ``ks_2samp(method="asymp")`` reports for the same data.
    """
    ref = _as_distribution(reference, "reference")
    cur = _as_distribution(live, "live")
    _check_same_length(ref, cur)
    if reference_rows <= 0 or live_rows <= 0:
        raise DriftInputError("rows", "positive sample sizes", f"reference {reference_rows}, live {live_rows}")
    statistic = float(np.max(np.abs(np.cumsum(ref) - np.cumsum(cur))))
    statistic = min(statistic, 1.0)
    effective = round(reference_rows * live_rows / (reference_rows + live_rows))
    p_value = float(np.clip(stats.kstwo.sf(statistic, max(effective, 1)), 0.0, 1.0))
    return TestResult(statistic, p_value)


def chi_squared(reference: Sequence[float] | FloatArray, live_counts: Sequence[float] | FloatArray) -> TestResult:
    """Pearson's chi-squared of live counts against counts expected from the reference shares.

    A bin the reference never saw but live data fills makes the statistic infinite (p = 0).
    """
    ref = _as_distribution(reference, "reference")
    observed = np.asarray(live_counts, dtype=np.float64)
    _as_distribution(observed, "live")
    _check_same_length(ref, observed)
    expected = ref * float(observed.sum())
    impossible = (expected == 0) & (observed > 0)
    if np.any(impossible):
        return TestResult(math.inf, 0.0)
    used = expected > 0
    statistic = float(np.sum((observed[used] - expected[used]) ** 2 / expected[used]))
    dof = int(used.sum()) - 1
    p_value = float(stats.chi2.sf(statistic, dof)) if dof > 0 else 1.0
    return TestResult(statistic, p_value)


# -- configuration ----------------------------------------------------------------------------------------------


class Rule(BaseModel):
    """Which statistic decides, and its threshold (the method's default when left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Method = Method.PSI
    threshold: float | None = Field(default=None, gt=0)

    def effective_threshold(self) -> float:
        return self.threshold if self.threshold is not None else self.method.default_threshold


class DriftConfig(BaseModel):
    """Drift thresholds for one model: a default rule, per-feature rules, the class-mix rule, dataset share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Rule = Rule()
    features: dict[str, Rule] = Field(default_factory=dict)
    prediction: Rule = Rule()
    drift_share: float = Field(default=0.5, gt=0, le=1)
    min_rows: int = Field(default=100, ge=1)

    def rule_for(self, feature: str) -> Rule:
        if feature == PREDICTION:
            return self.prediction
        return self.features.get(feature, self.default)


# -- per-feature and dataset verdicts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BinnedReference:
    """One feature's (or the class mix's) reference bins: labels, shares, how many rows they came from."""

    name: str
    kind: str  # "numeric" | "categorical"
    labels: tuple[str, ...]
    proportions: tuple[float, ...]
    rows: int


def references_from_manifest(manifest: Manifest) -> list[BinnedReference]:
    """Every feature's reference bins plus the class mix (named ``PREDICTION``), in manifest order."""
    rows = manifest.reference.rows
    result = []
    for feature in manifest.features:
        ref = manifest.reference.features.get(feature.name)
        if ref is None:
            continue
        kind = "numeric" if isinstance(ref, NumericReference) else "categorical"
        assert isinstance(ref, NumericReference | CategoricalReference)
        result.append(
            BinnedReference(feature.name, kind, tuple(bin_labels(ref)), tuple(reference_proportions(ref)), rows)
        )
    mix = manifest.reference.predictions
    result.append(
        BinnedReference(PREDICTION, "categorical", tuple(str(c) for c in mix.classes), tuple(mix.proportions), rows)
    )
    return result


@dataclass(frozen=True)
class FeatureDrift:
    """The statistics of one feature over a window, and the verdict of its rule."""

    name: str
    kind: str
    labels: tuple[str, ...]
    reference: tuple[float, ...]  # shares
    live: tuple[float, ...]  # counts
    live_rows: float
    method: Method
    threshold: float
    enough_data: bool
    psi: float | None = None
    jensen_shannon: float | None = None
    ks: TestResult | None = None
    chi_squared: TestResult | None = None

    @property
    def score(self) -> float | None:
        """The value the rule compares with its threshold."""
        match self.method:
            case Method.PSI:
                return self.psi
            case Method.JENSEN_SHANNON:
                return self.jensen_shannon
            case Method.KS:
                return self.ks.p_value if self.ks else None
            case Method.CHISQUARE:
                return self.chi_squared.p_value if self.chi_squared else None

    @property
    def drifted(self) -> bool:
        score = self.score
        if not self.enough_data or score is None:
            return False
        if self.method is Method.KS:
            return score <= self.threshold
        if self.method is Method.CHISQUARE:
            return score < self.threshold
        return score >= self.threshold

    @property
    def psi_band(self) -> str | None:
        return psi_band(self.psi) if self.psi is not None else None

    def live_shares(self) -> tuple[float, ...]:
        total = sum(self.live)
        return tuple(c / total for c in self.live) if total else tuple(0.0 for _ in self.live)


def feature_drift(
    reference: BinnedReference, live_counts: Mapping[str, float], rule: Rule, min_rows: int
) -> FeatureDrift:
    """All statistics of one feature; ``live_counts`` maps bin labels to counts (missing labels count 0)."""
    unknown = sorted(set(live_counts) - set(reference.labels))
    if unknown:
        raise DriftInputError(
            f"bins of {reference.name!r}", f"labels among {list(reference.labels)}", f"unknown labels {unknown}"
        )
    live = tuple(float(live_counts.get(label, 0.0)) for label in reference.labels)
    if any(c < 0 or not math.isfinite(c) for c in live):
        raise DriftInputError(f"live counts of {reference.name!r}", "finite counts >= 0", str(live))
    live_rows = sum(live)
    method = rule.method
    if method is Method.KS and reference.kind != "numeric":
        raise DriftInputError(f"rule of {reference.name!r}", "ks only for numeric features", f"a {reference.kind} one")
    base = FeatureDrift(
        name=reference.name,
        kind=reference.kind,
        labels=reference.labels,
        reference=reference.proportions,
        live=live,
        live_rows=live_rows,
        method=method,
        threshold=rule.effective_threshold(),
        enough_data=live_rows >= min_rows,
    )
    if live_rows == 0:
        return base
    ref = np.asarray(reference.proportions, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    seen = (ref > 0) | (cur > 0)
    ref_seen, cur_seen = ref[seen], cur[seen]
    ks = None
    if reference.kind == "numeric":
        ordered = np.array([label != NAN_BIN_LABEL for label in reference.labels]) & seen
        ref_ordered, cur_ordered = ref[ordered], cur[ordered]
        if ref_ordered.sum() > 0 and cur_ordered.sum() > 0:
            ref_rows = reference.rows * float(ref_ordered.sum()) / float(ref.sum())
            ks = ks_binned(ref_ordered, cur_ordered, ref_rows, float(cur_ordered.sum()))
    return replace(
        base,
        psi=psi(ref_seen, cur_seen),
        jensen_shannon=jensen_shannon(ref_seen, cur_seen),
        ks=ks,
        chi_squared=chi_squared(ref_seen, cur_seen),
    )


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift, the class mix, and the dataset verdict for one model version over one window."""

    model: str
    version: int
    window_seconds: float | None  # None: since the version was loaded (counters from zero)
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None
    drift_share: float
    min_rows: int
    rows: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def enough_data(self) -> bool:
        return self.rows >= self.min_rows

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def drifted_share(self) -> float:
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    @property
    def dataset_drift(self) -> bool:
        return self.enough_data and bool(self.features) and self.drifted_share >= self.drift_share

    @property
    def prediction_drift(self) -> bool:
        return self.prediction is not None and self.prediction.drifted


def drift_report(
    model: str,
    version: int,
    references: Sequence[BinnedReference],
    feature_counts: Mapping[str, Mapping[str, float]],
    prediction_counts: Mapping[str, float],
    config: DriftConfig,
    window_seconds: float | None,
    rows: float | None = None,
    notes: Sequence[str] = (),
) -> DriftReport:
    """Drift of every referenced feature and of the class mix; ``rows`` defaults to the predictions counted."""
    known = {r.name for r in references}
    unknown_rules = sorted(set(config.features) - known)
    if unknown_rules:
        raise DriftInputError(
            "drift.features", f"feature names among {sorted(known - {PREDICTION})}", str(unknown_rules)
        )
    features = []
    prediction = None
    for reference in references:
        rule = config.rule_for(reference.name)
        if reference.name == PREDICTION:
            prediction = feature_drift(reference, prediction_counts, rule, config.min_rows)
        else:
            features.append(feature_drift(reference, feature_counts.get(reference.name, {}), rule, config.min_rows))
    total = float(sum(prediction_counts.values())) if rows is None else rows
    return DriftReport(
        model=model,
        version=version,
        window_seconds=window_seconds,
        features=tuple(features),
        prediction=prediction,
        drift_share=config.drift_share,
        min_rows=config.min_rows,
        rows=total,
        notes=tuple(notes),
    )
