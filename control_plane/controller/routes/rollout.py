"""``/v1/status``, the rollout actions on ``/v1/models/{model}/...``, ``/v1/reconcile`` and ``/v1/history``.

Each route parses, calls the same ``tritonops.control_plane`` function the CLI calls (with the authenticated
identity as the actor), and answers with the library's own result type.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from tritonops.control_plane.controller.auth import require
from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.controller.reconciler import ACTOR as RECONCILER
from tritonops.control_plane.controller.schemas import (
    CanaryRequest,
    DeployRequest,
    HistoryPage,
    PromoteRequest,
    ReasonRequest,
    ReconcileRequest,
    RollbackRequest,
)
from tritonops.control_plane.discovery import discover
from tritonops.control_plane.errors import RolloutInProgressError
from tritonops.control_plane.fleet import ReconcileReport, reconcile
from tritonops.control_plane.rollout import (
    EndpointStatus,
    RolloutResult,
    abort_canary,
    canary,
    deploy,
    history,
    promote,
    rollback,
    status,
)
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import Identity, Role

router = APIRouter(prefix="/v1", tags=["rollout"])
Ctx = Annotated[ApiContext, Depends(context)]
RECONCILE_WAIT_SECONDS = 10.0
"""How long an action waits for the controller's own reconcile to release the model's lock (tens of ms when in
sync); a rollout by someone else is refused at once, as on the command line."""


def _after_reconcile(action: Callable[[], RolloutResult]) -> RolloutResult:
    deadline = time.monotonic() + RECONCILE_WAIT_SECONDS
    while True:
        try:
            return action()
        except RolloutInProgressError as exc:
            if not exc.holder.startswith(f"reconcile by {RECONCILER}") or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@router.get("/status", response_model=list[EndpointStatus])
def get_status(
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.VIEWER, "status"))],
    model: Annotated[str | None, Query(max_length=63)] = None,
) -> list[EndpointStatus]:
    """Per endpoint: each model's versions ready, desired live and canary, request and error counts, drift."""
    return status(ctx.settings, model)


@router.post("/models/{model}/promote", response_model=RolloutResult)
def post_promote(
    model: str, body: PromoteRequest, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.OPERATOR, "promote"))]
) -> RolloutResult:
    """Make ``version`` live everywhere once its gates pass; ``dry_run`` runs the gates and changes nothing."""
    result = _after_reconcile(
        lambda: promote(
            ctx.settings,
            model,
            body.version,
            actor=who.name,
            reason=body.reason,
            dry_run=body.dry_run,
            max_latency_ms=body.max_latency_ms,
        )
    )
    if not result.dry_run:
        ctx.changed(f"promote {model} by {who.name}")
    return result


@router.post("/models/{model}/deploy", response_model=RolloutResult)
def post_deploy(
    model: str, body: DeployRequest, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.OPERATOR, "deploy"))]
) -> RolloutResult:
    """Load ``version`` beside live as the candidate ``<model>__canary``, with no traffic."""
    result = _after_reconcile(lambda: deploy(ctx.settings, model, body.version, actor=who.name, reason=body.reason))
    ctx.changed(f"deploy {model} by {who.name}")
    return result


@router.post("/models/{model}/canary", response_model=RolloutResult)
def post_canary(
    model: str, body: CanaryRequest, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.OPERATOR, "canary"))]
) -> RolloutResult:
    """Send ``weight`` of the traffic to ``version`` (loading it as the candidate when needed)."""
    result = _after_reconcile(
        lambda: canary(ctx.settings, model, body.version, body.weight, actor=who.name, reason=body.reason)
    )
    ctx.changed(f"canary {model} by {who.name}")
    return result


@router.post("/models/{model}/abort", response_model=RolloutResult)
def post_abort(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "abort-canary"))],
    body: ReasonRequest | None = None,
) -> RolloutResult:
    """End the canary: all traffic to live, the candidate unloaded."""
    reason = body.reason if body else ""
    result = _after_reconcile(lambda: abort_canary(ctx.settings, model, actor=who.name, reason=reason))
    ctx.changed(f"abort-canary {model} by {who.name}")
    return result


@router.post("/models/{model}/rollback", response_model=RolloutResult)
def post_rollback(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "rollback"))],
    body: RollbackRequest | None = None,
) -> RolloutResult:
    """Make the previous live version (or ``to``) live again everywhere; ends any canary."""
    request = body or RollbackRequest()
    result = _after_reconcile(
        lambda: rollback(ctx.settings, model, actor=who.name, to=request.to, reason=request.reason)
    )
    ctx.changed(f"rollback {model} by {who.name}")
    return result


@router.post("/reconcile", response_model=ReconcileReport)
def post_reconcile(
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "reconcile"))],
    body: ReconcileRequest | None = None,
) -> ReconcileReport:
    """Make every endpoint serve exactly the desired state now (``dry_run``: only report what differs)."""
    dry_run = body.dry_run if body else False
    with StateStore.open(ctx.settings.state) as store:
        return reconcile(
            store,
            ctx.settings.repository,
            ctx.settings.admin_headers(),
            actor=who.name,
            dry_run=dry_run,
            endpoints=discover(ctx.settings.fleet, store),
        )


@router.get("/history", response_model=HistoryPage)
def get_history(
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.VIEWER, "history"))],
    model: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HistoryPage:
    """Audit events, oldest first, the last ``limit`` before the id ``before``; all models unless ``model``."""
    events = history(ctx.settings, model, limit, before)
    more = len(events) == limit and events[0].id > 1
    return HistoryPage(events=events, next_before=events[0].id if more and events else None)
