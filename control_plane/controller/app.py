"""The controller's FastAPI application: routers per area, problem answers, a body size limit, tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI

from tritonops import __version__
from tritonops.control_plane.controller.auth import Gatekeeper
from tritonops.control_plane.controller.context import ApiContext
from tritonops.control_plane.controller.problems import api_problem, install_problem_handlers
from tritonops.control_plane.controller.routes import ROUTERS

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body accepted (a full feedback batch of 10,000 rows each fits)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is answered 413 before the route parses any of it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, f"{int(declared)} bytes")
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send, f"more than {self.limit} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        response = api_problem("body_too_large", f"the request body has {size}; the limit is {self.limit} bytes")
        await response(scope, receive, send)


def create_app(context: ApiContext, routers: list[APIRouter] | None = None, max_body: int = MAX_BODY_BYTES) -> Any:
    """The API over ``context``; ``routers`` default to every area's (``routes.ROUTERS``)."""
    app = FastAPI(
        title="tritonops controller",
        version=__version__,
        description="Desired state, rollouts, guardrails and feedback for models served on Triton. "
        "Every /v1 route needs 'Authorization: Bearer <token>'; errors are application/problem+json.",
    )
    app.state.context = context
    app.state.gatekeeper = Gatekeeper(context.settings)
    install_problem_handlers(app)
    for router in routers if routers is not None else ROUTERS:
        app.include_router(router)
    return BodyLimit(app, max_body)
