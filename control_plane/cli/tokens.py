"""``tritonops token create|list|revoke``: API tokens of the controller, on the local state."""

from __future__ import annotations

import typer
from rich.table import Table

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.cli.remote import controller
from tritonops.control_plane.drift import parse_duration
from tritonops.control_plane.rollout import resolve_actor
from tritonops.control_plane.state import StateStore
from tritonops.control_plane.tokens import create_token, revoke_token
from tritonops.settings import load_settings

token_app = typer.Typer(
    help="API tokens for the controller: one per person or service, role viewer, operator or admin.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    name: str = typer.Argument(..., help="Who the token is for (a person or a service); the audit log's actor."),
    role: str = typer.Option(..., "--role", help="viewer (reads), operator (rollouts, feedback), admin (all)."),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime such as 12h or 30d (default: none)."),
) -> None:
    """Create a token and print it once: only its hash is kept."""
    seconds = parse_duration(expires, "--expires") if expires else None
    if api := controller():
        token, record = api.token_create(name, role, seconds)
    else:
        with StateStore.open(load_settings().state) as store:
            token, record = create_token(store, name, role, actor=resolve_actor(), expires_in_seconds=seconds)
    console.print(f"token for {record.name} (role {record.role}), shown only now:", highlight=False)
    typer.echo(token)
    if record.expires_at:
        console.print(f"expires {record.expires_at}", highlight=False)


@token_app.command("list")
def list_tokens() -> None:
    """Tokens by name, role and prefix (never the token itself)."""
    table = Table("name", "role", "prefix", "created", "by", "expires", "revoked")
    api = controller()
    if api is None:
        with StateStore.open(load_settings().state) as store:
            records = store.tokens()
    else:
        records = api.tokens()
    for r in records:
        table.add_row(
            r.name, r.role, r.prefix + "...", r.created_at, r.created_by, r.expires_at or "-", r.revoked_at or "-"
        )
    console.print(table)


@token_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Name of the token.")) -> None:
    """Revoke a token: every later call with it is refused."""
    if api := controller():
        api.token_revoke(name)
    else:
        with StateStore.open(load_settings().state) as store:
            revoke_token(store, name, actor=resolve_actor())
    console.print(f"revoked {name}")
