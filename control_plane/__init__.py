"""The control plane: desired state, fleet reconcile, rollout (deploy, promote, canary, rollback), audit.

Library first: the ``tritonops`` CLI and the guardrail watcher call these same functions. The names load on first
use: the CLI lives in this package, and ``tritonops --help`` must not pay for gRPC, pandas and scipy.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
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

_FLEET = "tritonops.control_plane.fleet"
_ROLLOUT = "tritonops.control_plane.rollout"
_STATE = "tritonops.control_plane.state"
_LAZY = {
    "ReconcileReport": _FLEET,
    "reconcile": _FLEET,
    **dict.fromkeys(
        [
            "EndpointStatus",
            "ModelStatus",
            "RolloutResult",
            "abort_canary",
            "canary",
            "deploy",
            "fleet_add",
            "fleet_list",
            "fleet_remove",
            "history",
            "promote",
            "resolve_actor",
            "rollback",
            "set_capture",
            "status",
        ],
        _ROLLOUT,
    ),
    "AuditEvent": _STATE,
    "ModelState": _STATE,
    "StateStore": _STATE,
}

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


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tritonops.control_plane' has no attribute {name!r}")
