"""In-memory drift and traffic counters for one model version; the backend flushes them to Triton metrics.

The hot path only adds numpy counts (``count_batch``, ``count_invalid``); ``take`` hands over what accumulated
since the last call and starts again from zero, so a flush turns into a few metric increments. Bin numbering is
``tritonops.contract.assign_bins``, the same function the converter and the drift statistics use.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tritonops.contract.bins import assign_bins, bin_labels
from tritonops.contract.served import Bins, ServingManifest
from tritonops.serving.validation import REASONS, Batch, Reason

DURATION_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of ``tritonops_request_duration_seconds``."""
MAX_PENDING_ROWS = 200_000
"""Rows queued for binning before the hot path bins them itself (bounds memory between flushes)."""


@dataclass(frozen=True)
class FeatureBins:
    """Where a feature lives in the request tensors and how its values are binned."""

    feature: str
    tensor: str
    column: int
    reference: Bins
    labels: tuple[str, ...]


@dataclass
class PendingCounts:
    """Counts accumulated between two flushes."""

    rows: int = 0
    feature_bins: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    predictions: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    invalid: dict[Reason, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0

    def add(self, other: PendingCounts) -> None:
        """Add ``other``'s counts to these."""
        self.rows += other.rows
        for name, counts in other.feature_bins.items():
            self.feature_bins[name] += counts
        self.predictions += other.predictions
        for reason, count in other.invalid.items():
            self.invalid[reason] += count
        self.durations.extend(other.durations)
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses


class DriftCounters:
    """Thread-safe accumulators: per-feature bins, per-class predictions, rows, invalid requests, cache lookups."""

    def __init__(self, manifest: ServingManifest) -> None:
        self.features = tuple(
            FeatureBins(
                feature=f.name,
                tensor=f.tensor,
                column=f.column,
                reference=manifest.reference.features[f.name],
                labels=tuple(bin_labels(manifest.reference.features[f.name])),
            )
            for f in manifest.features
            if f.name in manifest.reference.features
        )
        self.classes: tuple[str, ...] = tuple(str(c) for c in manifest.classes)
        self._class_index: dict[object, int] = {}
        for index, cls in enumerate(manifest.classes):
            self._class_index[cls] = index
            self._class_index[str(cls)] = index
        self._lock = threading.Lock()
        self._current = self._fresh()
        self._pending: list[tuple[Batch, npt.NDArray[np.generic]]] = []
        self._pending_rows = 0

    def _fresh(self) -> PendingCounts:
        return PendingCounts(
            feature_bins={f.feature: np.zeros(len(f.labels), dtype=np.int64) for f in self.features},
            predictions=np.zeros(len(self.classes), dtype=np.int64),
            invalid=dict.fromkeys(REASONS, 0),
        )

    def count_batch(self, batch: Batch, labels: npt.NDArray[np.generic], seconds: float | None = None) -> None:
        """Queue the inputs and predicted labels of one executed batch (``seconds``: its backend time).

        The hot path only keeps references; binning happens in ``take`` over everything queued, where one
        numpy pass over thousands of rows costs less than many small ones. ``batch`` must own its memory
        (the backend passes the concatenated copy, never views of Triton's request buffers).
        """
        with self._lock:
            self._pending.append((batch, labels))
            self._pending_rows += int(labels.shape[0])
            if seconds is not None:
                self._current.durations.append(seconds)
            overflow = self._pending_rows >= MAX_PENDING_ROWS
        if overflow:  # bound the memory held between flushes
            counted = self._fresh()
            self._bin_into(counted, self._swap_pending())
            with self._lock:
                self._current.add(counted)

    def count_invalid(self, reason: Reason) -> None:
        with self._lock:
            self._current.invalid[reason] += 1

    def count_cache(self, hits: int, misses: int) -> None:
        """Add one batch's response-cache lookups."""
        with self._lock:
            self._current.cache_hits += hits
            self._current.cache_misses += misses

    def take(self) -> PendingCounts:
        """Everything counted since the previous ``take``; the counters start again from zero."""
        with self._lock:
            snapshot, self._current = self._current, self._fresh()
            pending, self._pending, self._pending_rows = self._pending, [], 0
        self._bin_into(snapshot, pending)
        return snapshot

    def _swap_pending(self) -> list[tuple[Batch, npt.NDArray[np.generic]]]:
        with self._lock:
            pending, self._pending, self._pending_rows = self._pending, [], 0
        return pending

    def _bin_into(self, snapshot: PendingCounts, pending: list[tuple[Batch, npt.NDArray[np.generic]]]) -> None:
        if not pending:
            return
        labels = np.concatenate([batch_labels.reshape(-1) for _, batch_labels in pending])
        snapshot.rows += int(labels.shape[0])
        # one concatenation per tensor, not per feature: a model has few tensors and many features
        tensors = {f.tensor for f in self.features}
        joined = {name: np.concatenate([batch[name] for batch, _ in pending]) for name in tensors}
        for f in self.features:
            bins = assign_bins(f.reference, joined[f.tensor][:, f.column])
            snapshot.feature_bins[f.feature] += np.bincount(bins, minlength=len(f.labels))
        for value, count in _tally(labels):
            key = value.decode("utf-8") if isinstance(value, bytes) else value
            snapshot.predictions[self._class_index[key]] += count


def _tally(labels: npt.NDArray[np.generic]) -> list[tuple[object, int]]:
    """Each distinct label with its count; string labels are hashed, not sorted (a sort of objects is slow)."""
    if labels.dtype == np.object_:
        return list(Counter(labels.tolist()).items())
    values, counts = np.unique(labels, return_counts=True)
    return list(zip(values.tolist(), counts.tolist(), strict=True))
