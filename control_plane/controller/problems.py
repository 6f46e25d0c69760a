"""The one place where errors become HTTP answers: ``application/problem+json`` (RFC 9457) with a stable ``code``.

Every ``TritonOpsError`` is mapped by its family (the same families the CLI maps to exit codes); the first row
whose class the error is an instance of wins, so narrow classes come first. Clients branch on ``code``, never on
``detail`` (a message for people).
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tritonops.clients.errors import ClientError
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
    ModelLoadError,
    PermissionDeniedError,
    PolicyError,
    RolloutInProgressError,
    StateError,
    TokenError,
    UnknownModelError,
    UnknownVersionError,
)
from tritonops.converters.errors import ConversionError
from tritonops.errors import ConfigurationError, TritonOpsError
from tritonops.serving.errors import ServingError

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger("tritonops.controller.api")

PROBLEMS: tuple[tuple[type[TritonOpsError], int, str, str], ...] = (
    (AuthenticationError, 401, "unauthenticated", "Authentication required"),
    (PermissionDeniedError, 403, "forbidden", "Role too low"),
    (UnknownModelError, 404, "unknown_model", "Unknown model"),
    (UnknownVersionError, 404, "unknown_version", "Unknown or incomplete version"),
    (RolloutInProgressError, 409, "rollout_in_progress", "Another rollout of this model is in progress"),
    (GateError, 422, "gate_refused", "A promotion gate refused the version"),
    (InvalidRolloutError, 409, "invalid_rollout", "Not possible in the current desired state"),
    (PolicyError, 422, "invalid_policy", "Invalid guardrail policy"),
    (TokenError, 409, "token", "Token not created or revoked"),
    (FleetError, 422, "fleet", "Fleet change refused"),
    (FeedbackError, 422, "feedback", "Feedback not recorded"),
    (DriftInputError, 422, "drift_input", "Drift input does not fit the reference"),
    (AdminAuthError, 502, "admin_auth", "A Triton endpoint refused the controller's admin key"),
    (EndpointUnreachableError, 503, "endpoint_unreachable", "A Triton endpoint is unreachable"),
    (ModelLoadError, 502, "model_load", "Triton could not load the model"),
    (FleetApplyError, 502, "fleet_apply", "Some endpoints are not in the desired state yet"),
    (MetricsError, 502, "metrics", "Metrics could not be read"),
    (StateError, 503, "state", "The state database is unusable"),
    (ConfigurationError, 422, "configuration", "Configuration error"),
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


def problem_response(status: int, code: str, title: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": f"urn:tritonops:problem:{code}", "title": title, "status": status, "detail": detail, "code": code}
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="tritonops"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def api_problem(code: str, detail: str, **extra: object) -> JSONResponse:
    status, title = API_PROBLEMS[code]
    return problem_response(status, code, title, detail, **extra)


def _validation_detail(exc: RequestValidationError) -> tuple[str, str, list[dict[str, object]]]:
    errors = list(exc.errors())
    if errors and isinstance(errors[0].get("input"), bytes):
        return "invalid_json", "expected a JSON body (Content-Type: application/json)", []
    if errors and errors[0].get("type") == "json_invalid":
        ctx = errors[0].get("ctx") or {}
        return "invalid_json", f"the body is not valid JSON ({ctx.get('error', 'parse error')})", []
    described = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        got = error.get("input")
        described.append({"field": where, "message": error.get("msg", ""), "got": _short(got)})
    first = described[0] if described else {"field": "body", "message": "invalid", "got": None}
    detail = f"field {first['field']}: {first['message']} (got {first['got']})"
    if len(described) > 1:
        detail += f"; and {len(described) - 1} more problem(s) in 'errors'"
    return "invalid_request", detail, described


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def install_problem_handlers(app: FastAPI) -> None:
    """Every error answer of ``app`` becomes a problem document."""

    @app.exception_handler(TritonOpsError)
    async def _ours(request: Request, exc: TritonOpsError) -> JSONResponse:
        status, code, title = problem_for(exc)
        if status >= 500:
            _log.warning("%s %s: %s", request.method, request.url.path, exc, extra={"code": code})
        return problem_response(status, code, title, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, detail, errors = _validation_detail(exc)
        return api_problem(code, detail, **({"errors": errors} if errors else {}))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code)
        if code is None:
            return problem_response(exc.status_code, f"http_{exc.status_code}", "HTTP error", str(exc.detail))
        return api_problem(code, str(exc.detail) if exc.detail else API_PROBLEMS[code][1])

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("%s %s failed", request.method, request.url.path)
        return api_problem("internal", f"unexpected {type(exc).__name__}; see the controller log")
