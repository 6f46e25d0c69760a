"""Who calls the API: ``Authorization: Bearer <token>`` -> ``Identity``, the role check, and refusals.

Every refusal (no token, an unknown, revoked or expired one, a role too low) is an audit event naming the caller
(the token's name when it is known, else ``anonymous@<client address>``) and answers 401 or 403. A client that keeps
sending bad tokens waits longer each time (doubling from ``base_delay`` up to ``max_delay``) before its 401.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from tritonops.control_plane.errors import AuthenticationError, PermissionDeniedError
from tritonops.control_plane.state import AuditEntry, StateStore
from tritonops.control_plane.tokens import Identity, Role, authenticate
from tritonops.settings import Settings


class BadTokenThrottle:
    """Per client address: how many bad tokens in a row, and how long the next 401 waits. Bounded in size."""

    def __init__(
        self, base_delay: float = 0.1, max_delay: float = 5.0, forget_after: float = 600.0, max_clients: int = 4096
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_clients = max_clients
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def failure(self, client: str, now: float | None = None) -> float:
        """Count a bad token from ``client``; the seconds its answer should wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            count, last = self._failures.pop(client, (0, now))
            count = 1 if now - last > self.forget_after else count + 1
            self._failures[client] = (count, now)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        return 0.0 if count <= 1 else min(self.base_delay * 2 ** (count - 2), self.max_delay)

    def success(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def __len__(self) -> int:
        return len(self._failures)


def bearer_token(header: str) -> str:
    """The token of an ``Authorization`` header value; ``AuthenticationError`` saying what was wrong."""
    if not header:
        raise AuthenticationError("no API token: send the header 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            f"the Authorization header must be 'Bearer <token>', got the scheme {scheme[:20]!r}"
            + ("" if token.strip() else " without a token")
        )
    return token.strip()


class Gatekeeper:
    """Authenticates callers against the state's tokens and records refusals in the audit log."""

    def __init__(self, settings: Settings, throttle: BadTokenThrottle | None = None) -> None:
        self.settings = settings
        self.throttle = throttle or BadTokenThrottle()

    def identify(self, header: str) -> Identity:
        token = bearer_token(header)
        with StateStore.open(self.settings.state) as store:
            return authenticate(store, token)

    def refuse(self, actor: str, action: str, model: str | None, why: str, where: str) -> None:
        with StateStore.open(self.settings.state) as store:
            store.record(AuditEntry(actor, action, model, None, None, f"API refused: {why}", "refused", where))


def require(role: Role, action: str) -> Callable[[Request], Awaitable[Identity]]:
    """A FastAPI dependency: the caller's identity, when its role is at least ``role``; ``action`` names the
    refused operation in the audit log."""

    async def dependency(request: Request) -> Identity:
        gate: Gatekeeper = request.app.state.gatekeeper
        client = request.client.host if request.client else "unknown"
        model = request.path_params.get("model")
        where = f"{request.method} {request.url.path} from {client}"
        try:
            identity = await run_in_threadpool(gate.identify, request.headers.get("authorization", ""))
        except AuthenticationError as exc:
            delay = gate.throttle.failure(client)
            await run_in_threadpool(gate.refuse, f"anonymous@{client}", action, model, str(exc), where)
            if delay:
                await asyncio.sleep(delay)
            raise
        gate.throttle.success(client)
        if not identity.role.allows(role):
            refusal = PermissionDeniedError(f"token {identity.name!r}", identity.role.value, role.value, action)
            await run_in_threadpool(gate.refuse, identity.name, action, model, str(refusal), where)
            raise refusal
        request.state.identity = identity
        return identity

    return dependency
