"""Error families and their problem answers: one table for the API (error -> HTTP status + ``code``) and for its
clients (``code`` -> error family, so the CLI in remote mode exits with the same code as locally).

Every ``TritonOpsError`` is mapped by its family (the same families the CLI maps to exit codes); the first row
whose class the error is an instance of wins, so narrow classes come first. No FastAPI here: clients import it.
"""

from __future__ import annotations

from tritonops.clients.errors import ClientError
from tritonops.contract.errors import ContractError
from tritonops.control_plane.errors import (
    AdminAuthError,
    AuthenticationError,
    ControlPlaneError,
    DriftInputError,
    EndpointUnreachableError,
    FeedbackError,
    FleetApplyError,
    FleetError,
    GateError,
    InvalidRolloutError,
    MetricsError,
    PermissionDeniedError,
    PolicyError,
    RolloutInProgressError,
    RolloutSpecError,
    StateError,
    TokenError,
    UnknownModelError,
    UnknownVersionError,
    VersionLoadError,
)
from tritonops.converters.errors import ConversionError
from tritonops.errors import ConfigurationError, TritonOpsError
from tritonops.serving.errors import ServingError

PROBLEM_JSON = "application/problem+json"

PROBLEMS: tuple[tuple[type[TritonOpsError], int, str, str], ...] = (
    (AuthenticationError, 401, "unauthenticated", "Authentication required"),
    (PermissionDeniedError, 403, "forbidden", "Role too low"),
    (UnknownModelError, 404, "unknown_model", "Unknown model"),
    (UnknownVersionError, 404, "unknown_version", "Unknown or incomplete version"),
    (RolloutInProgressError, 409, "rollout_in_progress", "Another rollout of this model is in progress"),
    (GateError, 422, "gate_refused", "A promotion gate refused the version"),
    (RolloutSpecError, 422, "invalid_rollout_spec", "Malformed progressive rollout"),
    (InvalidRolloutError, 409, "invalid_rollout", "Not possible in the current desired state"),
    (PolicyError, 422, "invalid_policy", "Invalid guardrail policy"),
    (TokenError, 409, "token", "Token not created or revoked"),
    (FleetError, 422, "fleet", "Fleet change refused"),
    (FeedbackError, 422, "feedback", "Feedback not recorded"),
    (DriftInputError, 422, "drift_input", "Drift input does not fit the reference"),
    (AdminAuthError, 502, "admin_auth", "A Triton endpoint refused the controller's admin key"),
    (EndpointUnreachableError, 503, "endpoint_unreachable", "A Triton endpoint is unreachable"),
    (VersionLoadError, 502, "model_load", "Triton could not load the model"),
    (FleetApplyError, 502, "fleet_apply", "Some endpoints are not in the desired state yet"),
    (MetricsError, 502, "metrics", "Metrics could not be read"),
    (StateError, 503, "state", "The state database is unusable"),
    (ConfigurationError, 422, "configuration", "Configuration error"),
    (ContractError, 422, "contract", "Data or a model config does not match the contract"),
    (ConversionError, 422, "conversion", "Model conversion or repository error"),
    (ServingError, 500, "serving", "Serving error"),
    (ClientError, 502, "client", "Client error"),
    (ControlPlaneError, 500, "control_plane", "Control plane error"),
    (TritonOpsError, 500, "error", "Error"),
)
"""(error family, HTTP status, problem code, title), narrowest first."""

API_PROBLEMS = {
    "invalid_json": (400, "Malformed JSON body"),
    "invalid_request": (422, "Request does not match the schema"),
    "body_too_large": (413, "Request body too large"),
    "not_found": (404, "No such route"),
    "method_not_allowed": (405, "Method not allowed"),
    "internal": (500, "Internal error"),
}
"""Problems of the HTTP layer itself (no ``TritonOpsError`` behind them)."""


def problem_for(exc: TritonOpsError) -> tuple[int, str, str]:
    """(HTTP status, code, title) of an error."""
    for family, status, code, title in PROBLEMS:
        if isinstance(exc, family):
            return status, code, title
    raise AssertionError("TritonOpsError is the last row")  # pragma: no cover


API_FAMILIES: dict[str, type[TritonOpsError]] = {
    "invalid_json": ConfigurationError,
    "invalid_request": ConfigurationError,
    "body_too_large": ConfigurationError,
    "not_found": ConfigurationError,
    "method_not_allowed": ConfigurationError,
}
"""What the HTTP layer's problems mean to a client: its request was wrong (a client and controller of different
versions, or a bad value); ``internal`` and unknown codes are the control plane's errors."""


def family_of(code: str) -> type[TritonOpsError]:
    """The error family a problem ``code`` stands for (the controller's own errors for an unknown code)."""
    for family, _, known, _ in PROBLEMS:
        if known == code:
            return family
    return API_FAMILIES.get(code, ControlPlaneError)
