"""What the API's routes share: settings, the exporter, and hooks into the controller loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from tritonops.control_plane.controller.dispatch import WebhookDispatcher
from tritonops.control_plane.exporter import ControlPlaneExporter
from tritonops.control_plane.metrics import FleetWindow
from tritonops.control_plane.tokens import Identity
from tritonops.settings import Settings

_log = logging.getLogger("tritonops.controller.api")


def _no_change(reason: str) -> None:
    """Without a loop (tests of the API alone) a change triggers nothing."""


@dataclass
class ApiContext:
    """Shared by every route through ``request.app.state.context``."""

    settings: Settings
    exporter: ControlPlaneExporter = field(default_factory=ControlPlaneExporter)
    on_change: Callable[[str], None] = _no_change
    """Called after every state change (the controller reconciles right away)."""
    window: Callable[[float | None], FleetWindow] | None = None
    """Counter windows of the fleet (the controller's window source); None: scrape the fleet on demand."""
    readiness: Callable[[], dict[str, str | None]] = field(default_factory=lambda: dict)
    """Named checks for ``/readyz``: None = passing, else why not."""
    dispatcher: WebhookDispatcher | None = None
    """Delivers webhook triggers (alerts with ``retrain``); None: no webhooks."""
    leader: Callable[[], dict[str, object]] | None = None
    """Who leads the replicas (``/readyz`` shows it); None: no lease (the API alone)."""

    def changed(self, reason: str) -> None:
        """The desired state changed (the library logged the action): let the loop react."""
        self.on_change(reason)

    def acted(self, identity: Identity, action: str, model: str | None, version: int | None, detail: str) -> None:
        """An action the rollout library does not log (fleet, tokens, policies): one log line, then react."""
        _log.info(
            "%s %s by %s: %s",
            action,
            model or "-",
            identity.name,
            detail,
            extra={"action": action, "model": model, "version": version, "actor": identity.name},
        )
        self.on_change(" ".join(part for part in (action, model, "by", identity.name) if part))


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx
