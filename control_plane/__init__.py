"""The control plane: desired state, fleet reconcile, rollout (deploy, promote, canary, rollback), audit.

Library first: the ``tritonops`` CLI and the guardrail watcher call these same functions.
"""

from tritonops.control_plane.fleet import ReconcileReport, reconcile
from tritonops.control_plane.rollout import (
    EndpointStatus,
    ModelStatus,
    RolloutResult,
    abort_canary,
    canary,
    deploy,
    fleet_add,
    fleet_list,
    fleet_remove,
    history,
    promote,
    resolve_actor,
    rollback,
    set_capture,
    status,
)
from tritonops.control_plane.state import AuditEvent, ModelState, StateStore

__all__ = [
    "AuditEvent",
    "EndpointStatus",
    "ModelState",
    "ModelStatus",
    "ReconcileReport",
    "RolloutResult",
    "StateStore",
    "abort_canary",
    "canary",
    "deploy",
    "fleet_add",
    "fleet_list",
    "fleet_remove",
    "history",
    "promote",
    "reconcile",
    "resolve_actor",
    "rollback",
    "set_capture",
    "status",
]
