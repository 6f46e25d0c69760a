"""``tritonops token create|list|revoke``: API tokens of the controller, on the local state or through it."""

from __future__ import annotations

from enum import StrEnum

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.drift import parse_duration
from tritonops.control_plane.cli.output import console, print_json, print_table
from tritonops.control_plane.cli.remote import controller

token_app = typer.Typer(
    help="API tokens for the controller: one per person or service, role viewer, operator or admin.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


class Role(StrEnum):
    """What a token may do: viewer (reads), operator (rollouts, feedback), admin (all)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


@token_app.command("create")
def create(
    name: str = typer.Argument(..., help="Who the token is for (a person or a service); the audit log's actor."),
    role: Role = typer.Option(..., "--role", help="viewer (reads), operator (rollouts, feedback), admin (all)."),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime such as 12h or 30d (default: none)."),
    state: str | None = options.STATE,
) -> None:
    """Create a token and print it once: only its hash is kept."""
    seconds = parse_duration(expires, "--expires") if expires else None
    if api := controller():
        token, record = api.token_create(name, role.value, seconds)
    else:
        from tritonops.control_plane.rollout import resolve_actor
        from tritonops.control_plane.state import StateStore
        from tritonops.control_plane.tokens import create_token

        with StateStore.open(options.settings(state=state).state) as store:
            token, record = create_token(store, name, role.value, actor=resolve_actor(), expires_in_seconds=seconds)
    console().print(f"token for {record.name} (role {record.role}), shown only now:", highlight=False)
    typer.echo(token)
    if record.expires_at:
        console().print(f"expires {record.expires_at}", highlight=False)


@token_app.command("list")
def list_tokens(state: str | None = options.STATE, as_json: bool = options.JSON) -> None:
    """Tokens by name, role and prefix (never the token itself)."""
    from tritonops.control_plane.views import from_tokens

    if api := controller():
        records = api.tokens()
    else:
        from tritonops.control_plane.state import StateStore

        with StateStore.open(options.settings(state=state).state, create=False) as store:
            records = store.tokens()
    view = from_tokens(records)
    if as_json:
        print_json(view)
        return
    rows = [
        [t.name, t.role, t.prefix + "...", t.created_at, t.created_by, t.expires_at or "-", t.revoked_at or "-"]
        for t in view.tokens
    ]
    print_table(["name", "role", "prefix", "created", "by", "expires", "revoked"], rows)


@token_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Name of the token."), state: str | None = options.STATE) -> None:
    """Revoke a token: every later call with it is refused."""
    if api := controller():
        api.token_revoke(name)
    else:
        from tritonops.control_plane.rollout import resolve_actor
        from tritonops.control_plane.state import StateStore
        from tritonops.control_plane.tokens import revoke_token

        with StateStore.open(options.settings(state=state).state, create=False) as store:
            revoke_token(store, name, actor=resolve_actor())
    console().print(f"revoked {name}")
