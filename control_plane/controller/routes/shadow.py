"""``/v1/models/{model}/shadow``: start, stop and report shadow scoring (the CLI's ``tritonops shadow``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from tritonops.control_plane.controller.auth import require
from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.controller.schemas import ReasonRequest, ShadowRequest
from tritonops.control_plane.discovery import discover
from tritonops.control_plane.metrics import metrics_urls, scrape
from tritonops.control_plane.rollout import RolloutResult, shadow, stop_shadow
from tritonops.control_plane.shadow import shadow_reports
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import Identity, Role

router = APIRouter(prefix="/v1", tags=["shadow"])
Ctx = Annotated[ApiContext, Depends(context)]


@router.post("/models/{model}/shadow", response_model=RolloutResult)
def post_shadow(
    model: str, body: ShadowRequest, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.OPERATOR, "shadow"))]
) -> RolloutResult:
    """Mirror ``share`` of live's answered rows to ``version``: scored and compared, never returned."""
    result = shadow(ctx.settings, model, body.version, body.share, actor=who.name, reason=body.reason)
    ctx.changed(f"shadow {model} by {who.name}")
    return result


@router.post("/models/{model}/shadow/stop", response_model=RolloutResult)
def post_shadow_stop(
    model: str,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "stop-shadow"))],
    body: ReasonRequest | None = None,
) -> RolloutResult:
    """End the shadow: the live model reloads without mirroring."""
    result = stop_shadow(ctx.settings, model, actor=who.name, reason=body.reason if body else "")
    ctx.changed(f"stop-shadow {model} by {who.name}")
    return result


@router.get("/models/{model}/shadow")
def get_shadow(
    model: str, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.VIEWER, "shadow-report"))]
) -> list[dict[str, object]]:
    """Per (live, shadow) version pair, over the fleet: rows mirrored, dropped, compared, agreement, |dp|,
    shadow errors by reason, shadow p99 (counts since the live model last loaded)."""
    if ctx.window is not None:
        snapshots = [w.latest for w in ctx.window(None).windows.values()]
    else:
        with StateStore.open(ctx.settings.state) as store:
            urls = metrics_urls([], discover(ctx.settings.fleet, store))
        snapshots = [scrape(url) for url in urls]
    return [report.to_dict() for report in shadow_reports(snapshots, model)]
