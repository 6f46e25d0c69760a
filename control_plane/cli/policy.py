"""``tritonops policy set|show|delete``: guardrail policies in the state, run by the controller for every model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.cli.remote import controller
from tritonops.control_plane.errors import PolicyError
from tritonops.control_plane.guardrails import load_policy
from tritonops.control_plane.policies import DEFAULT_POLICY, remove_policy, store_policy, stored_policies
from tritonops.control_plane.rollout import resolve_actor
from tritonops.control_plane.state import StateStore
from tritonops.settings import load_settings

policy_app = typer.Typer(
    help=f"Guardrail policies kept in the state; MODEL {DEFAULT_POLICY!r} is the default for every promoted model.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")


@policy_app.command("set")
def set_policy(
    model: str = typer.Argument(..., help=f"Model name, or {DEFAULT_POLICY!r} for the default policy."),
    policy_file: Path = typer.Argument(..., help="Policy file, YAML or TOML (see `tritonops watch --help`)."),
) -> None:
    """Store MODEL's guardrail policy; the controller starts (or updates) its guardrails within a second."""
    policy = load_policy(policy_file)
    if api := controller():
        api.policy_set(model, policy.model_dump(mode="json"))
    else:
        settings = load_settings()
        with StateStore.open(settings.state) as store:
            store_policy(store, model, policy, actor=resolve_actor(), repository=settings.repository)
    console.print(f"policy of {model} stored from {policy_file}", highlight=False)


@policy_app.command("show")
def show(model: str | None = typer.Argument(None, help="Only this model (default: every stored policy).")) -> None:
    """Print stored policies as JSON (every field, defaults included)."""
    if api := controller():
        shown = api.stored_policies(model)
    else:
        with StateStore.open(load_settings().state) as store:
            shown = {name: p.model_dump(mode="json") for name, p in stored_policies(store).items()}
    if model is not None:
        if model not in shown:
            raise PolicyError(f"model {model!r}", "no policy is stored for it (see `tritonops policy show`)")
        shown = {model: shown[model]}
    typer.echo(json.dumps(shown, indent=2))


@policy_app.command("delete")
def delete(model: str = typer.Argument(..., help=f"Model name, or {DEFAULT_POLICY!r}.")) -> None:
    """Forget MODEL's policy (its guardrails stop, or the default applies again)."""
    if api := controller():
        api.policy_delete(model)
    else:
        with StateStore.open(load_settings().state) as store:
            remove_policy(store, model, actor=resolve_actor())
    console.print(f"policy of {model} removed", highlight=False)
