"""``tritonops mlflow sync``: a thin wrapper over ``control_plane.mlflow_sync``."""

from __future__ import annotations

import typer

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.mlflow_sync import sync as sync_alias
from tritonops.control_plane.rollout import resolve_actor
from tritonops.converters.files import parse_classes
from tritonops.settings import load_settings

mlflow_app = typer.Typer(help="Serve models from an MLflow registry ($MLFLOW_TRACKING_URI).", no_args_is_help=True)
app.add_typer(mlflow_app, name="mlflow")


@mlflow_app.command("sync")
def sync(
    registered: str = typer.Argument(..., metavar="NAME", help="Registered model name in MLflow."),
    alias: str = typer.Option("champion", "--alias", help="Registry alias to follow."),
    model: str = typer.Option(None, "--model", help="Model name in tritonops (default: NAME)."),
    classes: str = typer.Option(None, help="PyTorch flavor only: class names in output order, comma-separated."),
    allow_version_skew: bool = typer.Option(
        False, "--allow-version-skew", help="Convert a model trained with other library versions (recorded)."
    ),
    actor: str | None = typer.Option(None, "--actor", help="Who acts, for the audit log (default: $TRITONOPS_ACTOR)."),
) -> None:
    """Convert what NAME@ALIAS points to (unless converted already) and promote it through the normal gates.

    The audit event of the promotion names the MLflow model version. Run it again after moving the alias.
    """
    result = sync_alias(
        load_settings(),
        registered,
        alias,
        actor=resolve_actor(actor),
        model=model,
        classes=parse_classes(classes) if classes else None,
        allow_version_skew=allow_version_skew,
        progress=lambda step: console.print(f"[dim]>[/] {step}", highlight=False),
    )
    target = result.version.name
    if result.promoted is None:
        console.print(f"[bold green]ok[/] {registered}@{alias} = MLflow version {result.registered_version} is live "
                      f"as {target} version {result.version.version}")  # fmt: skip
        return
    console.print(
        f"[bold green]ok[/] {registered}@{alias} = MLflow version {result.registered_version} -> {target} version "
        f"{result.version.version} ({'converted, ' if result.converted else ''}promoted: {result.promoted.detail})"
    )
