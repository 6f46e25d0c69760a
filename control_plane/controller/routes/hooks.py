"""``POST /v1/hooks/alertmanager``: alerts from Prometheus' Alertmanager, recorded and acted on per policy.

Every alert of the payload (firing or resolved) becomes an audit event whose actor is the calling token (e.g. the
``alertmanager`` operator token) and whose reason is the alert's name. A firing alert with a ``model`` label is
then acted on as the model's policy says under ``alerts:`` (``rollback``, ``abort-canary``, ``retrain`` = the
webhooks' ``alert`` trigger, or ``record``, the default); a canary's ``<model>__canary`` label counts for
``<model>``. One model's alert never touches another model.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from tritonops.contract.names import CANARY_SUFFIX
from tritonops.control_plane.controller.auth import require
from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.errors import ControlPlaneError
from tritonops.control_plane.guardrails import AlertAction
from tritonops.control_plane.policies import effective_policy
from tritonops.control_plane.rollout import abort_canary, rollback
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.control_plane.tokens import Identity, Role
from tritonops.control_plane.webhooks import Trigger

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])
Ctx = Annotated[ApiContext, Depends(context)]
_log = logging.getLogger("tritonops.controller.alerts")
SAVED_NOT_APPLIED = "saved, not applied"
"""An outcome's result when the action is the desired state now but the fleet is empty (reconcile applies it)."""


class Alert(BaseModel):
    """One alert as Alertmanager's webhook sends it (the fields we read; others are kept by ``extra``)."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(pattern="^(firing|resolved)$")
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook body (version 4)."""

    model_config = ConfigDict(extra="allow")

    version: str = "4"
    status: str = ""
    receiver: str = ""
    alerts: list[Alert] = Field(max_length=1000)


class AlertOutcome(BaseModel):
    alert: str
    model: str | None
    status: str
    action: str
    result: str
    """``ok``, ``failed``, or ``saved, not applied`` (a rollback or abort saved while the fleet is empty)."""
    detail: str


class AlertmanagerAnswer(BaseModel):
    outcomes: list[AlertOutcome]


def _model_of(alert: Alert) -> str | None:
    model = alert.labels.get("model")
    return model.removesuffix(CANARY_SUFFIX) if model else None


def _act(ctx: ApiContext, who: Identity, alert: Alert, model: str) -> tuple[str, str, str]:
    """(action, result, detail) for one firing alert of ``model``."""
    name = alert.labels.get("alertname", "unnamed")
    with StateStore.open(ctx.settings.state) as store:
        found = effective_policy(store, model)
    action = found[0].alerts.get(name, AlertAction.RECORD) if found is not None else AlertAction.RECORD
    reason = f"alert {name}: {alert.annotations.get('summary', '')}".strip().rstrip(":")
    try:
        if action is AlertAction.ROLLBACK:
            done = rollback(ctx.settings, model, actor=who.name, reason=reason)
            return action.value, "ok" if done.applied else SAVED_NOT_APPLIED, done.detail
        if action is AlertAction.ABORT_CANARY:
            done = abort_canary(ctx.settings, model, actor=who.name, reason=reason)
            return action.value, "ok" if done.applied else SAVED_NOT_APPLIED, done.detail
        if action is AlertAction.RETRAIN:
            with StateStore.open(ctx.settings.state) as store:
                state = store.model(model)
            trigger = Trigger(
                model,
                state.live if state else None,
                "alert",
                reason,
                {"alert": name, "labels": alert.labels, "annotations": alert.annotations, "starts_at": alert.startsAt},
                dedup_key=f"{model}:alert:{name}:{alert.fingerprint}:{alert.startsAt}",
            )
            queued = ctx.dispatcher is not None and ctx.dispatcher.submit(trigger)
            return action.value, "ok" if queued else "failed", "webhooks called" if queued else "no webhooks configured"
    except ControlPlaneError as exc:
        return action.value, "failed", str(exc)
    return action.value, "ok", "recorded"


@router.post("/alertmanager", response_model=AlertmanagerAnswer)
def alertmanager(
    payload: AlertmanagerPayload,
    ctx: Ctx,
    who: Annotated[Identity, Depends(require(Role.OPERATOR, "alert"))],
) -> AlertmanagerAnswer:
    """Record each alert in the audit log, then act on firing ones per the model's policy (``alerts:``)."""
    outcomes = []
    for alert in payload.alerts:
        name = alert.labels.get("alertname", "unnamed")
        model = _model_of(alert)
        detail: dict[str, Any] = {"labels": alert.labels, "annotations": alert.annotations, "starts_at": alert.startsAt}
        with StateStore.open(ctx.settings.state) as store:
            store.record(
                AuditEntry(who.name, f"alert-{alert.status}", model, None, None, name, "ok", str(detail)[:2000])
            )
        action, result, summary = ("record", "ok", "recorded")
        if alert.status == "firing" and model is not None:
            action, result, summary = _act(ctx, who, alert, model)
        _log.warning(
            "alert %s (%s) for %s: %s -> %s",
            name,
            alert.status,
            model or "-",
            action,
            summary,
            extra={"model": model, "actor": who.name, "action": f"alert-{action}"},
        )
        if action != "record":
            ctx.changed(f"alert {name} {action} of {model}")
        outcomes.append(AlertOutcome(alert=name, model=model, status=alert.status, action=action, result=result,
                                     detail=summary))  # fmt: skip
    return AlertmanagerAnswer(outcomes=outcomes)
