"""Ground truth: which version answered a request, what the right answer was, accuracy per version.

Clients record each prediction (``record_prediction(request_id, model, version, label)``, the SDK does it when
asked); labels arrive later (``record_feedback(request_id, true_label)``). Both land in the control plane's state
database (SQLite or PostgreSQL), in tables of their own. ``accuracy_report`` gives accuracy per version;
``compare_accuracy`` tests whether a canary is less accurate than live (one-sided two-proportion z-test, the pooled
form; its two-sided p-value is the one ``scipy.stats.chi2_contingency(correction=False)`` gives on the same 2x2
table).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from tritonops.control_plane.errors import FeedbackError
from tritonops.control_plane.migrations import open_state_database
from tritonops.settings import StateLocation, load_settings


@dataclass(frozen=True)
class VersionAccuracy:
    """Labelled predictions of one version and how many were right."""

    model: str
    version: int
    predictions: int
    labelled: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass(frozen=True)
class AccuracyComparison:
    """Canary against live on labelled requests: the difference and how surprising it is."""

    live: VersionAccuracy
    canary: VersionAccuracy
    z: float | None
    p_value_worse: float | None  # one-sided: canary less accurate than live
    p_value_two_sided: float | None
    min_labels: int

    @property
    def enough_labels(self) -> bool:
        return self.live.labelled >= self.min_labels and self.canary.labelled >= self.min_labels

    def canary_worse(self, alpha: float) -> bool:
        return self.enough_labels and self.p_value_worse is not None and self.p_value_worse < alpha


def two_proportion_z(correct_a: int, n_a: int, correct_b: int, n_b: int) -> tuple[float, float, float] | None:
    """Pooled z of ``accuracy_b - accuracy_a``: (z, p that b is worse, two-sided p); None when undefined."""
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (correct_a + correct_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return None
    z = (correct_b / n_b - correct_a / n_a) / spread
    return z, float(stats.norm.cdf(z)), float(2 * stats.norm.sf(abs(z)))


class FeedbackStore:
    """Predictions and ground truth in the control plane's state database (a SQLite file or PostgreSQL).

    Also the SDK's local sink (``tritonops.clients.FeedbackSink``) for the embedded case:
    ``ClientOptions(feedback=FeedbackStore(path))``; over a network, use ``HttpFeedbackSink`` to the controller.
    """

    def __init__(self, location: StateLocation | Path, busy_timeout: float = 10.0) -> None:
        self._db = open_state_database(location, busy_timeout)
        self.location = self._db.location

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record_prediction(self, request_id: str, model: str, version: int, label: object) -> None:
        """Remember that ``model`` ``version`` answered ``request_id`` with ``label`` (recording twice refused)."""
        self.record_predictions(model, version, [(request_id, label)], _one=True)

    def record_predictions(
        self, model: str, version: int, answers: Iterable[tuple[str, object]], *, _one: bool = False
    ) -> int:
        """Many ``(request_id, label)`` answers of one version in one transaction: all recorded, or none."""
        _check_text("model", model)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise FeedbackError(f"version: expected a version number >= 1, got {version!r}")
        now = time.time()
        rows = []
        for request_id, label in answers:
            _check_text("request_id", request_id)
            rows.append((request_id, model, version, _label_text(label), now))
        with self._db.write() as db:
            for row in rows:
                added = db.execute(
                    "INSERT INTO tritonops_predictions (request_id, model, version, label, at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (request_id) DO NOTHING",
                    row,
                )
                if added.rowcount == 0:  # raising rolls the whole transaction back
                    if _one:
                        raise FeedbackError(
                            f"request_id {row[0]!r}: a prediction is already recorded for it; ids must be unique"
                        )
                    raise FeedbackError(
                        f"record_predictions: a request id among {len(rows)} is already recorded; nothing was recorded"
                    )
        return len(rows)

    def record_batch(
        self, predictions: Sequence[tuple[str, str, int, object]], labels: Sequence[tuple[str, object]]
    ) -> tuple[int, int]:
        """Predictions ``(request_id, model, version, label)`` and labels ``(request_id, true_label)`` in one
        transaction: all recorded, or none (``FeedbackError`` naming the first bad row); returns how many of each.

        A prediction recorded again with the same model, version and label is accepted and not counted twice, so a
        client may retry a batch whose answer it lost; the same id with a different answer is refused.
        """
        now = time.time()
        rows = []
        for i, (request_id, model, version, label) in enumerate(predictions):
            _check_text(f"predictions[{i}].request_id", request_id)
            _check_text(f"predictions[{i}].model", model)
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise FeedbackError(f"predictions[{i}].version: expected a version number >= 1, got {version!r}")
            rows.append((request_id, model, version, _label_text(label), now))
        truths = []
        for i, (request_id, true_label) in enumerate(labels):
            _check_text(f"labels[{i}].request_id", request_id)
            truths.append((request_id, _label_text(true_label), now))
        added = 0
        with self._db.write() as db:  # raising inside rolls the whole batch back
            for i, row in enumerate(rows):
                inserted = db.execute(
                    "INSERT INTO tritonops_predictions (request_id, model, version, label, at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (request_id) DO NOTHING",
                    row,
                )
                if inserted.rowcount == 1:
                    added += 1
                    continue
                old = db.execute(
                    "SELECT model, version, label FROM tritonops_predictions WHERE request_id = ?", (row[0],)
                ).fetchone()
                if (old[0], int(old[1]), old[2]) != row[1:4]:
                    raise FeedbackError(
                        f"predictions[{i}]: request_id {row[0]!r} is already recorded as {old[0]} v{old[1]} "
                        f"predicting {old[2]!r}; ids must be unique; nothing was recorded"
                    )
            for i, truth in enumerate(truths):
                known = db.execute("SELECT 1 FROM tritonops_predictions WHERE request_id = ?", (truth[0],)).fetchone()
                if known is None:
                    raise FeedbackError(
                        f"labels[{i}]: request_id {truth[0]!r} has no recorded prediction, so no version to credit; "
                        "nothing was recorded"
                    )
                db.execute(
                    "INSERT INTO tritonops_feedback (request_id, true_label, at) VALUES (?, ?, ?) "
                    "ON CONFLICT(request_id) DO UPDATE SET true_label = excluded.true_label, at = excluded.at",
                    truth,
                )
        return added, len(truths)

    def record_feedback(self, request_id: str, true_label: object) -> None:
        """The right answer for ``request_id``; it must have a recorded prediction. A later label replaces one."""
        _check_text("request_id", request_id)
        with self._db.write() as db:
            known = db.execute("SELECT 1 FROM tritonops_predictions WHERE request_id = ?", (request_id,)).fetchone()
            if known is None:
                raise FeedbackError(
                    f"request_id {request_id!r}: no prediction recorded for it, so no version to credit; record "
                    "predictions with record_prediction (the SDK's record_predictions option) first"
                )
            db.execute(
                "INSERT INTO tritonops_feedback (request_id, true_label, at) VALUES (?, ?, ?) "
                "ON CONFLICT(request_id) DO UPDATE SET true_label = excluded.true_label, at = excluded.at",
                (request_id, _label_text(true_label), time.time()),
            )

    def true_labels(self, request_ids: Sequence[str]) -> dict[str, str]:
        """The ground truth recorded for those of ``request_ids`` that have one."""
        found: dict[str, str] = {}
        with self._db.write() as db:
            for start in range(0, len(request_ids), 500):  # SQLite caps the number of bound parameters
                chunk = list(request_ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT request_id, true_label FROM tritonops_feedback WHERE request_id IN ({marks})", chunk
                ).fetchall()
                found.update((str(request_id), str(label)) for request_id, label in rows)
        return found

    def accuracy_report(self, model: str) -> list[VersionAccuracy]:
        """Per version of ``model``: predictions recorded, how many have a label, how many were right."""
        with self._db.write() as db:
            rows = db.execute(
                """SELECT p.version, COUNT(*), COUNT(f.request_id),
                          COALESCE(SUM(CASE WHEN f.true_label = p.label THEN 1 ELSE 0 END), 0)
                   FROM tritonops_predictions p LEFT JOIN tritonops_feedback f ON f.request_id = p.request_id
                   WHERE p.model = ? GROUP BY p.version ORDER BY p.version""",
                (model,),
            ).fetchall()
        return [VersionAccuracy(model, int(v), int(n), int(labelled), int(correct)) for v, n, labelled, correct in rows]

    def compare_accuracy(self, model: str, live: int, canary: int, min_labels: int = 50) -> AccuracyComparison:
        """Is ``canary`` less accurate than ``live`` on labelled requests?"""
        by_version = {a.version: a for a in self.accuracy_report(model)}
        a = by_version.get(live, VersionAccuracy(model, live, 0, 0, 0))
        b = by_version.get(canary, VersionAccuracy(model, canary, 0, 0, 0))
        test = two_proportion_z(a.correct, a.labelled, b.correct, b.labelled)
        z, worse, two_sided = test if test is not None else (None, None, None)
        return AccuracyComparison(a, b, z, worse, two_sided, min_labels)


def _check_text(field: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise FeedbackError(f"{field}: expected a non-empty string of at most 256 characters, got {value!r}")


def _label_text(label: object) -> str:
    if isinstance(label, bytes):
        return label.decode("utf-8")
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise FeedbackError(f"label: expected a class name (str) or class number (int), got {label!r}")
    return str(label)


def _store(path: Path | None) -> FeedbackStore:
    return FeedbackStore(path if path is not None else load_settings().state)


def record_prediction(request_id: str, model: str, version: int, label: object, *, path: Path | None = None) -> None:
    """Record which version answered ``request_id`` with which label (state file from settings by default)."""
    with _store(path) as store:
        store.record_prediction(request_id, model, version, label)


def record_feedback(request_id: str, true_label: object, *, path: Path | None = None) -> None:
    """Record the right answer for ``request_id``."""
    with _store(path) as store:
        store.record_feedback(request_id, true_label)


def accuracy_report(model: str, *, path: Path | None = None) -> list[VersionAccuracy]:
    """Accuracy per version of ``model`` from the recorded predictions and labels."""
    with _store(path) as store:
        return store.accuracy_report(model)
