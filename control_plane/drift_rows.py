"""The most drifted rows: captured rows ranked by how much they are the drift a report measured.

A feature's PSI is a sum of one term per bin, ``(live - ref) * ln(live / ref)``. A row *contributes* to a feature's
drift when its value falls in a bin the live window over-fills (live share above the reference share); its
contribution is that bin's PSI term, and 0 in a bin that is at or under its reference share. A row's **drift
score** is the sum of its contributions over every feature of the report, so a row sitting in the most over-filled
bins of several drifted features ranks first. Rows come from the capture store (``tritonops.control_plane.capture``)
of the report's version and window; a dropped column contributes nothing and a hashed one falls in ``__other__``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonops.contract.bins import assign_bins
from tritonops.contract.manifest import FeatureReference, NumericReference
from tritonops.control_plane.desired import version_manifest
from tritonops.control_plane.drift import DriftReport, FeatureDrift, psi_terms
from tritonops.control_plane.errors import CaptureError
from tritonops.settings import Settings

DRIFTED_ROWS = 10
"""Rows a report lists by default."""


@dataclass(frozen=True)
class DriftedRow:
    """One captured row with its drift score and each feature's contribution to it."""

    request_id: str
    time: str
    label: str
    score: float
    values: dict[str, Any]
    contributions: dict[str, float]


def bin_contributions(feature: FeatureDrift) -> npt.NDArray[np.float64]:
    """Per bin of ``feature``: its PSI term where the live share exceeds the reference share, else 0."""
    reference = np.asarray(feature.reference, dtype=np.float64)
    live = np.asarray(feature.live_shares(), dtype=np.float64)
    result = np.zeros(len(reference), dtype=np.float64)
    seen = (reference > 0) | (live > 0)
    if feature.live_rows <= 0 or not seen.any():
        return result
    result[seen] = psi_terms(reference[seen], live[seen])  # the same terms the feature's PSI adds up
    result[live <= reference] = 0.0
    return result


def _numbers(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Captured numeric values as floats: null is NaN; ``"inf"`` / ``"-inf"`` (how the earlier JSON-lines capture
    wrote infinities) infinite."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def most_drifted_rows(
    report: DriftReport,
    references: Mapping[str, FeatureReference],
    rows: Sequence[Mapping[str, Any]],
    limit: int = DRIFTED_ROWS,
) -> list[DriftedRow]:
    """The ``limit`` rows with the highest drift score (ties in the rows' order); rows scoring 0 are left out.

    ``rows`` are captured rows as dicts (``request_id``, ``time``, ``label`` and one ``feature.<name>`` per kept
    column); ``references`` the manifest's reference of each feature.
    """
    if not rows:
        return []
    scores = np.zeros(len(rows), dtype=np.float64)
    parts: dict[str, npt.NDArray[np.float64]] = {}
    for feature in report.features:
        column = f"feature.{feature.name}"
        reference = references.get(feature.name)
        if reference is None or column not in rows[0]:
            continue
        values = [row.get(column) for row in rows]
        bins = assign_bins(reference, _numbers(values) if isinstance(reference, NumericReference) else values)
        parts[feature.name] = bin_contributions(feature)[bins]
        scores += parts[feature.name]
    order = sorted(range(len(rows)), key=lambda i: -scores[i])
    found = []
    for i in order[:limit]:
        if scores[i] <= 0:
            break
        row = rows[i]
        found.append(
            DriftedRow(
                request_id=str(row.get("request_id", "")),
                time=str(row.get("time", "")),
                label=str(row.get("label", "")),
                score=float(scores[i]),
                values={name: row.get(f"feature.{name}") for name in parts},
                contributions={name: float(part[i]) for name, part in parts.items()},
            )
        )
    return found


def captured_drifted_rows(settings: Settings, report: DriftReport, limit: int = DRIFTED_ROWS) -> list[DriftedRow]:
    """The most drifted of the rows captured (``settings.capture_dir``) for the report's version in its window (all
    of them without one), binned with that version's manifest; an empty list when nothing was captured."""
    from tritonops.control_plane.capture import export  # pyarrow only when rows are wanted

    since = None if report.window_seconds is None else time.time() - report.window_seconds
    try:
        table = export(settings.capture_dir / "rows", report.model, since=since)
    except CaptureError:  # no rows captured for the model (in the window): nothing to list
        return []
    rows = [r for r in table.to_pylist() if r.get("version") == report.version]
    manifest = version_manifest(settings.repository, report.model, report.version)
    return most_drifted_rows(report, manifest.reference.features, rows, limit)
