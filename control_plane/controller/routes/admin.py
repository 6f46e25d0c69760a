"""``/v1/fleet`` and ``/v1/tokens`` (admin), ``/v1/whoami`` (anyone with a token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from tritonops.control_plane.controller.auth import require
from tritonops.control_plane.controller.context import ApiContext, context
from tritonops.control_plane.controller.schemas import (
    FleetAddRequest,
    FleetAnswer,
    TokenCreated,
    TokenCreateRequest,
    WhoAmI,
)
from tritonops.control_plane.rollout import fleet_add, fleet_list, fleet_remove
from tritonops.control_plane.state import StateStore, TokenRecord
from tritonops.control_plane.tokens import Identity, Role, create_token, revoke_token

router = APIRouter(prefix="/v1", tags=["admin"])
Ctx = Annotated[ApiContext, Depends(context)]


@router.get("/whoami", response_model=WhoAmI)
def whoami(who: Annotated[Identity, Depends(require(Role.VIEWER, "whoami"))]) -> WhoAmI:
    """The name and role of the calling token."""
    return WhoAmI(name=who.name, role=who.role.value)


@router.get("/fleet", response_model=FleetAnswer)
def get_fleet(ctx: Ctx, who: Annotated[Identity, Depends(require(Role.VIEWER, "fleet-list"))]) -> FleetAnswer:
    """The Triton gRPC endpoints the controller keeps in the desired state."""
    return FleetAnswer(endpoints=fleet_list(ctx.settings))


@router.post("/fleet", response_model=FleetAnswer, status_code=201)
def post_fleet(
    body: FleetAddRequest, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.ADMIN, "fleet-add"))]
) -> FleetAnswer:
    """Add an endpoint (``host:port``); the controller reconciles it right away."""
    fleet_add(ctx.settings, body.endpoint, actor=who.name)
    ctx.acted(who, "fleet-add", None, None, body.endpoint)
    return FleetAnswer(endpoints=fleet_list(ctx.settings))


@router.delete("/fleet/{endpoint}", response_model=FleetAnswer)
def delete_fleet(
    endpoint: str, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.ADMIN, "fleet-remove"))]
) -> FleetAnswer:
    """Remove an endpoint from the fleet (what it serves is left alone)."""
    fleet_remove(ctx.settings, endpoint, actor=who.name)
    ctx.acted(who, "fleet-remove", None, None, endpoint)
    return FleetAnswer(endpoints=fleet_list(ctx.settings))


@router.get("/tokens", response_model=list[TokenRecord])
def get_tokens(ctx: Ctx, who: Annotated[Identity, Depends(require(Role.ADMIN, "token-list"))]) -> list[TokenRecord]:
    """Every token by name, role and prefix (never the token), with its expiry and revocation."""
    with StateStore.open(ctx.settings.state) as store:
        return store.tokens()


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def post_token(
    body: TokenCreateRequest, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.ADMIN, "token-create"))]
) -> TokenCreated:
    """A new token for a person or service; the answer holds the token, the only time it is shown."""
    with StateStore.open(ctx.settings.state) as store:
        token, record = create_token(
            store, body.name, body.role, actor=who.name, expires_in_seconds=body.expires_in_seconds
        )
    ctx.acted(who, "token-create", None, None, f"{record.name} ({record.role}, {record.prefix}...)")
    return TokenCreated(token=token, record=record)


@router.delete("/tokens/{name}", status_code=204)
def delete_token(name: str, ctx: Ctx, who: Annotated[Identity, Depends(require(Role.ADMIN, "token-revoke"))]) -> None:
    """Revoke a token at once: its next call is refused."""
    with StateStore.open(ctx.settings.state) as store:
        revoke_token(store, name, actor=who.name)
    ctx.acted(who, "token-revoke", None, None, name)
