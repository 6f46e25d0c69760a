"""``POST /v1/feedback``: predictions and ground-truth labels from clients, many rows a call."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from tritonops.control_plane.controller.auth import require
from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.controller.schemas import FeedbackAnswer, FeedbackBatch
from tritonops.control_plane.feedback import FeedbackStore
from tritonops.control_plane.tokens import Identity, Role

router = APIRouter(prefix="/v1", tags=["feedback"])
Ctx = Annotated[ApiContext, Depends(context)]


@router.post("/feedback", response_model=FeedbackAnswer)
def post_feedback(
    body: FeedbackBatch, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.OPERATOR, "feedback"))]
) -> FeedbackAnswer:
    """Record predictions (which version answered which request id) and labels, all in one transaction."""
    with FeedbackStore(ctx.settings.state) as store:
        added, labelled = store.record_batch(
            [(p.request_id, p.model, p.version, p.label) for p in body.predictions],
            [(label.request_id, label.true_label) for label in body.labels],
        )
    return FeedbackAnswer(predictions=added, labels=labelled)
