"""``tritonops policy set|show|delete``: guardrail policies in the state, run by the controller for every model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import console, print_json
from tritonops.control_plane.cli.remote import controller

DEFAULT_POLICY = "*"
"""``tritonops.control_plane.state.DEFAULT_POLICY``, spelled here so ``--help`` loads no state code (a test pins
that the two agree)."""

policy_app = typer.Typer(
    help=f"Guardrail policies kept in the state; MODEL {DEFAULT_POLICY!r} is the default for every promoted model.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")


@policy_app.command("set")
def set_policy(
    model: str = typer.Argument(..., help=f"Model name, or {DEFAULT_POLICY!r} for the default policy."),
    policy_file: Path = typer.Argument(..., help="Policy file, YAML or TOML (see `tritonops watch --help`)."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
) -> None:
    """Store MODEL's guardrail policy; the controller starts (or updates) its guardrails within a second."""
    from tritonops.control_plane.guardrails import load_policy

    policy = load_policy(policy_file)
    if api := controller():
        api.policy_set(model, policy.model_dump(mode="json"))
    else:
        from tritonops.control_plane.policies import store_policy
        from tritonops.control_plane.rollout import resolve_actor
        from tritonops.control_plane.state import StateStore

        settings = options.settings(repository, state)
        with StateStore.open(settings.state) as store:
            store_policy(store, model, policy, actor=resolve_actor(), repository=settings.repository)
    console().print(f"policy of {model} stored from {policy_file}", highlight=False)


@policy_app.command("show")
def show(
    model: str | None = typer.Argument(None, help="Only this model (default: every stored policy)."),
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """Print stored policies as JSON (every field, defaults included; --json: inside the documented view)."""
    from tritonops.control_plane.errors import PolicyError

    if api := controller():
        shown = api.stored_policies(model)
    else:
        from tritonops.control_plane.policies import stored_policies
        from tritonops.control_plane.state import StateStore

        with StateStore.open(options.settings(state=state).state, create=False) as store:
            shown = {name: p.model_dump(mode="json") for name, p in stored_policies(store).items()}
    if model is not None:
        if model not in shown:
            raise PolicyError(f"model {model!r}", "no policy is stored for it (see `tritonops policy show`)")
        shown = {model: shown[model]}
    if as_json:
        from tritonops.control_plane.views import PoliciesView

        print_json(PoliciesView(policies=shown))
        return
    typer.echo(json.dumps(shown, indent=2))


@policy_app.command("delete")
def delete(
    model: str = typer.Argument(..., help=f"Model name, or {DEFAULT_POLICY!r}."), state: str | None = options.STATE
) -> None:
    """Forget MODEL's policy (its guardrails stop, or the default applies again)."""
    if api := controller():
        api.policy_delete(model)
    else:
        from tritonops.control_plane.policies import remove_policy
        from tritonops.control_plane.rollout import resolve_actor
        from tritonops.control_plane.state import StateStore

        with StateStore.open(options.settings(state=state).state, create=False) as store:
            remove_policy(store, model, actor=resolve_actor())
    console().print(f"policy of {model} removed", highlight=False)
