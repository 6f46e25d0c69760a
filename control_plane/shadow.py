"""Shadow reports: what the backend's shadow counters say, added up over the fleet's ``/metrics``.

The live model's backend exports ``tritonops_shadow_*`` per live version and shadow version (docs/metrics.md,
"Canary and shadow"); the counters run from the moment the live model loaded with its ``tritonops.shadow``
parameter. ``shadow_reports`` turns one scrape per endpoint into one report per (live version, shadow version);
``require_agreement`` is the promote gate built on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tritonops.control_plane.errors import GateError
from tritonops.control_plane.metrics import Snapshot, histogram_quantile

_PREFIX = "tritonops_shadow_"


@dataclass(frozen=True)
class ShadowReport:
    """A shadow version compared with one live version, over every endpoint scraped."""

    model: str
    live_version: str
    shadow_version: str
    mirrored: float = 0.0
    dropped: float = 0.0
    compared: float = 0.0
    agreed: float = 0.0
    prob_diff_sum: float = 0.0
    prob_diff_buckets: tuple[tuple[float, float], ...] = ()
    """Cumulative (upper bound, rows with max |dp| <= bound)."""
    errors: dict[str, float] = field(default_factory=dict)
    latency_buckets: tuple[tuple[float, float], ...] = ()

    @property
    def agreement(self) -> float | None:
        """Share of compared rows where the shadow's label equals live's (None before any comparison)."""
        return self.agreed / self.compared if self.compared else None

    @property
    def mean_prob_diff(self) -> float | None:
        return self.prob_diff_sum / self.compared if self.compared else None

    @property
    def identical(self) -> float:
        """Rows where every probability was identical (the ``le="0"`` bucket)."""
        return next((count for bound, count in self.prob_diff_buckets if bound == 0.0), 0.0)

    def prob_diff_quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.prob_diff_buckets)

    def latency_p99_ms(self) -> float | None:
        seconds = histogram_quantile(0.99, self.latency_buckets)
        return None if seconds is None else seconds * 1000.0

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "live_version": self.live_version,
            "shadow_version": self.shadow_version,
            "mirrored_rows": self.mirrored,
            "dropped_rows": self.dropped,
            "compared_rows": self.compared,
            "agreed_rows": self.agreed,
            "agreement": self.agreement,
            "identical_rows": self.identical,
            "mean_abs_prob_diff": self.mean_prob_diff,
            "p99_abs_prob_diff": self.prob_diff_quantile(0.99),
            "errors": dict(self.errors),
            "shadow_p99_ms": self.latency_p99_ms(),
        }


def _add_buckets(into: dict[float, float], snapshot: Snapshot, name: str, **match: str) -> None:
    for labels, value in snapshot.samples(name, **match):
        bound = math.inf if labels.get("le") == "+Inf" else float(labels["le"])
        into[bound] = into.get(bound, 0.0) + value


def shadow_reports(snapshots: Sequence[Snapshot], model: str) -> list[ShadowReport]:
    """One report per (live version, shadow version) of ``model`` found in the scrapes, ordered by versions."""
    pairs = sorted(
        {
            (labels["version"], labels["shadow_version"])
            for snapshot in snapshots
            for labels, _ in snapshot.samples(f"{_PREFIX}mirrored_rows_total", model=model)
        },
        key=lambda pair: (int(pair[0]), int(pair[1])),
    )
    reports = []
    for live, shadow in pairs:
        match = {"model": model, "version": live, "shadow_version": shadow}

        def total(name: str, **extra: str) -> float:
            return sum(s.total(f"{_PREFIX}{name}", **match, **extra) for s in snapshots)  # noqa: B023

        diff: dict[float, float] = {}
        latency: dict[float, float] = {}
        errors: dict[str, float] = {}
        for snapshot in snapshots:
            _add_buckets(diff, snapshot, f"{_PREFIX}prob_diff_rows_total", **match)
            _add_buckets(latency, snapshot, f"{_PREFIX}duration_seconds_bucket", **match)
            for labels, value in snapshot.samples(f"{_PREFIX}errors_total", **match):
                errors[labels["reason"]] = errors.get(labels["reason"], 0.0) + value
        reports.append(
            ShadowReport(
                model=model,
                live_version=live,
                shadow_version=shadow,
                mirrored=total("mirrored_rows_total"),
                dropped=total("dropped_rows_total"),
                compared=total("compared_rows_total"),
                agreed=total("agreed_rows_total"),
                prob_diff_sum=total("prob_diff_total"),
                prob_diff_buckets=tuple(sorted(diff.items())),
                errors=errors,
                latency_buckets=tuple(sorted(latency.items())),
            )
        )
    return reports


def require_agreement(reports: Sequence[ShadowReport], model: str, version: int, minimum: float) -> ShadowReport:
    """The promote gate: ``version`` ran as a shadow and agreed with live on at least ``minimum`` of its rows."""
    runs = [r for r in reports if r.shadow_version == str(version) and r.compared > 0]
    if not runs:
        raise GateError(
            model,
            version,
            "shadow agreement",
            f"no shadow comparison of version {version} on the fleet's /metrics; run "
            f"`tritonops shadow start {model} {version}` under traffic first",
        )
    best = max(runs, key=lambda r: r.compared)
    agreement = best.agreement or 0.0
    if agreement < minimum:
        raise GateError(
            model,
            version,
            "shadow agreement",
            f"agreed with live {best.live_version} on {agreement:.4f} of {best.compared:.0f} rows, "
            f"the minimum is {minimum}",
        )
    return best
