"""Ground truth for served predictions, stored by the control plane (``tritonops.control_plane.feedback``).

``control_plane`` is imported on first use only: applications that never record feedback don't load it.
"""

from __future__ import annotations

from pathlib import Path

from tritonops.clients.prediction import Prediction


def record_predictions(model: str, prediction: Prediction, path: Path | None) -> None:
    """Store which version of ``model`` answered each row of ``prediction`` (state: the file ``path`` or settings)."""
    from tritonops.control_plane.feedback import FeedbackStore
    from tritonops.settings import load_settings

    with FeedbackStore(path if path is not None else load_settings().state) as store:
        for row_id, label in zip(prediction.request_ids, prediction.labels.tolist(), strict=True):
            store.record_prediction(row_id, model, int(prediction.version), label)


def record_feedback(request_id: str, label: object, path: Path | None) -> None:
    """Store the right answer for one row id (``Prediction.request_ids``)."""
    from tritonops.control_plane.feedback import record_feedback as store_feedback

    store_feedback(request_id, label, path=path)
