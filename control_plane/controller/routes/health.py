"""``/healthz`` (the process answers), ``/readyz`` (it can serve: state usable, loop running), ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.controller.problems import problem_response
from tritonops.control_plane.errors import StateError
from tritonops.control_plane.state import StateStore

router = APIRouter(tags=["health"])
Ctx = Annotated[ApiContext, Depends(context)]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process and its HTTP server answer."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(ctx: Ctx) -> dict[str, object] | JSONResponse:
    """Readiness: the state database opens and every check of the controller loop passes; says who leads."""
    checks: dict[str, str | None] = {}
    try:
        with StateStore.open(ctx.settings.state, busy_timeout=2.0) as store:
            store.schema_version()
        checks["state"] = None
    except StateError as exc:
        checks["state"] = str(exc)
    checks.update(ctx.readiness())
    failing = {name: why for name, why in checks.items() if why is not None}
    leadership = {"leadership": ctx.leader()} if ctx.leader is not None and checks["state"] is None else {}
    if failing:
        detail = "; ".join(f"{name}: {why}" for name, why in failing.items())
        return problem_response(503, "not_ready", "Not ready", detail, checks=checks, **leadership)
    return {"status": "ready", "checks": {name: "ok" for name in checks}, **leadership}


@router.get("/metrics")
def metrics(ctx: Ctx) -> Response:
    """The control plane's Prometheus metrics (live/canary versions, drift, guardrails, automatic actions)."""
    return Response(ctx.exporter.render(), media_type=CONTENT_TYPE_LATEST)
