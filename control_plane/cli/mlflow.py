"""``tritonops mlflow sync``: a thin wrapper over ``tritonops.control_plane.mlflow_sync``."""

from __future__ import annotations

from pathlib import Path

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import console, print_json, styled

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
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    as_json: bool = options.JSON,
) -> None:
    """Convert what NAME@ALIAS points to (unless converted already) and promote it through the normal gates.

    The audit event of the promotion names the MLflow model version. Run it again after moving the alias.
    """
    from tritonops.control_plane.mlflow_sync import sync as sync_alias
    from tritonops.control_plane.rollout import resolve_actor
    from tritonops.control_plane.views import from_mlflow_sync
    from tritonops.converters.files import parse_classes

    def progress(step: str) -> None:
        if not as_json:  # with --json, stdout holds only the JSON
            console().print(styled(">", "dim"), step, markup=False, highlight=False)

    result = sync_alias(
        options.settings(repository, state),
        registered,
        alias,
        actor=resolve_actor(actor),
        model=model,
        classes=parse_classes(classes) if classes else None,
        allow_version_skew=allow_version_skew,
        progress=progress,
    )
    view = from_mlflow_sync(result)
    if as_json:
        print_json(view)
        return
    source = f"{registered}@{alias} = MLflow version {view.registered_version}"
    if view.promoted is None:
        line = f" {source} is live as {view.model} version {view.version}"
        console().print(styled("ok", "bold green"), line, sep="", markup=False)
        return
    done = f"{'converted, ' if view.converted else ''}promoted: {view.promoted.detail}"
    console().print(
        styled("ok", "bold green"), f" {source} -> {view.model} version {view.version} ({done})", sep="", markup=False
    )
