"""``/v1/models/{model}/rollouts``: progressive rollouts (the CLI's ``tritonops rollout``).

Starting, pausing, resuming and aborting need the operator role; reading needs a viewer. Any replica answers:
the rollout lives in the state database and the leader's driver (``controller.rollouts``) moves it on.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from tritonops.control_plane.controller.auth import require
from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.controller.schemas import ReasonRequest, RolloutRequest
from tritonops.control_plane.progressive import RolloutSpec, parse_analysis_data, parse_interval, parse_steps
from tritonops.control_plane.progressive_runs import (
    Rollout,
    abort_rollout,
    pause_rollout,
    resume_rollout,
    rollout_history,
    rollout_status,
    start_rollout,
)
from tritonops.control_plane.tokens import Identity, Role

router = APIRouter(prefix="/v1", tags=["progressive rollouts"])
Ctx = Annotated[ApiContext, Depends(context)]


@router.post("/models/{model}/rollouts", response_model=Rollout, status_code=201)
def post_rollout(
    model: str, body: RolloutRequest, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.OPERATOR, "rollout"))]
) -> Rollout:
    """Start a progressive rollout of ``version``: its first step is applied (gates included) before this answers;
    the controller steps it on, analysing each step's window, and promotes or rolls back by itself."""
    spec = RolloutSpec(
        body.version,
        parse_steps(body.steps),
        parse_interval(body.interval),
        parse_analysis_data(body.analysis, "analysis"),
    )
    rollout = start_rollout(ctx.settings, model, spec, actor=who.name, reason=body.reason)
    ctx.changed(f"rollout {model} by {who.name}")
    return rollout


@router.get("/models/{model}/rollouts", response_model=list[Rollout])
def get_rollouts(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.VIEWER, "rollout-history"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[Rollout]:
    """``model``'s progressive rollouts, newest first."""
    return rollout_history(ctx.settings, model, limit)


@router.get("/models/{model}/rollouts/current", response_model=Rollout)
def get_current(
    model: str, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.VIEWER, "rollout-status"))]
) -> Rollout:
    """The unfinished rollout of ``model``, else its latest: status, step, failed checks, the step log."""
    return rollout_status(ctx.settings, model)


@router.post("/models/{model}/rollouts/current/pause", response_model=Rollout)
def post_pause(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "rollout-pause"))],
    body: ReasonRequest | None = None,
) -> Rollout:
    """Stop stepping; the canary keeps its weight."""
    return pause_rollout(ctx.settings, model, actor=who.name, reason=body.reason if body else "")


@router.post("/models/{model}/rollouts/current/resume", response_model=Rollout)
def post_resume(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "rollout-resume"))],
    body: ReasonRequest | None = None,
) -> Rollout:
    """Go on: the current step starts again with a fresh window."""
    return resume_rollout(ctx.settings, model, actor=who.name, reason=body.reason if body else "")


@router.post("/models/{model}/rollouts/current/abort", response_model=Rollout)
def post_abort(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "rollout-abort"))],
    body: ReasonRequest | None = None,
) -> Rollout:
    """End the rollout: the canary is removed, live is untouched."""
    rollout = abort_rollout(ctx.settings, model, actor=who.name, reason=body.reason if body else "")
    ctx.changed(f"rollout-abort {model} by {who.name}")
    return rollout
