"""Shadow scoring: copies of answered batches scored by a candidate in the background and compared with live.

``ShadowMirror`` owns a bounded queue and one worker thread. The backend ``offer``s each live batch it chose to
mirror (inputs, live labels and probabilities) and returns its responses at once; a full queue drops the copy
(counted) instead of holding the caller up or growing memory. The worker runs the candidate, compares each row
(label agreement, max |probability difference| over the classes) and tallies; ``take`` hands the counts since the
last call to the metrics flush. Pure Python + numpy: the candidate runner is injected (BLS in the backend, a
function in unit tests).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tritonops.serving.errors import ServingError
from tritonops.serving.scoring import Prediction
from tritonops.serving.validation import Batch

PROB_DIFF_BUCKETS = (0.0, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds of the |probability difference| buckets; the first counts rows where the answers are identical."""
SHADOW_ERROR_REASONS = ("unavailable", "rejected", "model_error", "bad_output")
_MAX_LATENCIES = 10_000


class ShadowRunError(ServingError):
    """The shadow could not score a mirrored batch; ``reason`` is one of ``SHADOW_ERROR_REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in SHADOW_ERROR_REASONS:
            raise ValueError(f"unknown shadow error reason {reason!r}")
        self.reason = reason
        super().__init__(message)


ShadowRunner = Callable[[Batch], Prediction]
"""Scores one mirrored batch with the shadow; raises ``ShadowRunError`` when it can't."""


@dataclass
class ShadowSnapshot:
    """Counts since the previous ``take``."""

    mirrored: int = 0
    """Rows offered and queued for the shadow."""
    dropped: int = 0
    """Rows not mirrored because the queue was full."""
    compared: int = 0
    agreed: int = 0
    prob_diff_buckets: list[int] = field(default_factory=lambda: [0] * (len(PROB_DIFF_BUCKETS) + 1))
    """Non-cumulative counts per bucket of ``PROB_DIFF_BUCKETS``, the last one for > 1.0 (mismatched shapes)."""
    prob_diff_sum: float = 0.0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHADOW_ERROR_REASONS, 0))
    """Rows the shadow failed to score, by reason."""
    latencies: list[float] = field(default_factory=list)
    """Seconds per shadow call (one per mirrored batch)."""


def compare(live: Prediction, shadow: Prediction, into: ShadowSnapshot) -> None:
    """Tally label agreement and per-row max |probability difference| of one batch."""
    rows = live.label.shape[0]
    if shadow.label.shape[0] != rows:
        raise ShadowRunError("bad_output", f"the shadow answered {shadow.label.shape[0]} rows for {rows}")
    into.compared += rows
    into.agreed += int(np.count_nonzero(live.label.reshape(-1) == shadow.label.reshape(-1)))
    if shadow.probabilities.shape == live.probabilities.shape:
        diff: npt.NDArray[np.float64] = np.abs(
            live.probabilities.astype(np.float64) - shadow.probabilities.astype(np.float64)
        ).max(axis=1, initial=0.0)
    else:  # a candidate with other classes: its probabilities can't be compared column by column
        diff = np.full(rows, np.inf)
    counts = np.bincount(np.searchsorted(PROB_DIFF_BUCKETS, diff, side="left"), minlength=len(into.prob_diff_buckets))
    for index, count in enumerate(counts.tolist()):
        into.prob_diff_buckets[index] += count
    into.prob_diff_sum += float(diff[np.isfinite(diff)].sum())


class ShadowMirror:
    """A bounded queue of mirrored batches and the thread that scores and compares them."""

    def __init__(self, run: ShadowRunner, capacity: int) -> None:
        self._run = run
        self._queue: queue.Queue[tuple[Batch, Prediction] | None] = queue.Queue(maxsize=max(1, capacity))
        self._lock = threading.Lock()
        self._tally = ShadowSnapshot()
        self._thread = threading.Thread(target=self._work, name="tritonops-shadow", daemon=True)
        self._thread.start()

    def offer(self, inputs: Batch, live: Prediction) -> bool:
        """Queue a copy of ``inputs`` with live's answer; False (and counted as dropped) when the queue is full.

        The arrays are copied: request buffers belong to Triton and are gone once the responses are sent.
        """
        rows = live.label.shape[0]
        item = ({name: array.copy() for name, array in inputs.items()}, live)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self._tally.dropped += rows
            return False
        with self._lock:
            self._tally.mirrored += rows
        return True

    def take(self) -> ShadowSnapshot:
        with self._lock:
            snapshot, self._tally = self._tally, ShadowSnapshot()
        return snapshot

    def drain(self, timeout: float) -> bool:
        """Wait until every queued batch was scored (tests and shutdown); True when it emptied in time."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Stop the worker; batches still queued are discarded (counted as dropped), the one in flight finishes."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                with self._lock:
                    self._tally.dropped += item[1].label.shape[0]
            self._queue.task_done()
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._score(*item)
            finally:
                self._queue.task_done()

    def _score(self, inputs: Batch, live: Prediction) -> None:
        rows = live.label.shape[0]
        started = time.perf_counter()
        result = ShadowSnapshot()
        try:
            compare(live, self._run(inputs), result)
        except ShadowRunError as exc:
            with self._lock:
                self._tally.errors[exc.reason] += rows
            return
        except Exception:  # the candidate's untyped failures (ONNX Runtime, BLS) count as its errors
            with self._lock:
                self._tally.errors["model_error"] += rows
            return
        elapsed = time.perf_counter() - started
        with self._lock:
            tally = self._tally
            tally.compared += result.compared
            tally.agreed += result.agreed
            tally.prob_diff_buckets = [
                a + b for a, b in zip(tally.prob_diff_buckets, result.prob_diff_buckets, strict=True)
            ]
            tally.prob_diff_sum += result.prob_diff_sum
            if len(tally.latencies) < _MAX_LATENCIES:  # bounded between flushes, whatever the flush interval
                tally.latencies.append(elapsed)
