"""The one place where errors become HTTP answers: ``application/problem+json`` (RFC 9457) with a stable ``code``.

The table itself (error family -> status, code, title) is ``tritonops.control_plane.problem_codes``, free of
FastAPI so the API's clients map answers back with it. Clients branch on ``code``, never on ``detail`` (a message
for people).
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tritonops.control_plane.problem_codes import API_PROBLEMS, PROBLEM_JSON, problem_for
from tritonops.errors import TritonOpsError

_log = logging.getLogger("tritonops.controller.api")


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
        return problem_response(status, code, title, exc.describe())  # the message and the notes added on the way

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
