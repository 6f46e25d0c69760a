"""``tritonops retrain MODEL --reason`` and ``tritonops webhooks log``: outbound webhooks by hand, and what was sent."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

import typer
from rich.table import Table

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.errors import WebhookError
from tritonops.settings import load_settings

webhooks_app = typer.Typer(help="Outbound webhooks (retraining triggers): the delivery log.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@app.command("retrain")
def retrain(
    model: str = typer.Argument(..., help="Model name."),
    reason: str = typer.Option(..., "--reason", help="Why: sent to the webhooks and kept in the audit log."),
    actor: str | None = typer.Option(None, "--actor", help="Who asks (default: $TRITONOPS_ACTOR, then $USER)."),
    as_json: bool = typer.Option(False, "--json", help="Print each delivery's result as JSON."),
) -> None:
    """Call the configured retraining webhooks for MODEL now (TRITONOPS_WEBHOOKS), with an audit event."""
    from tritonops.control_plane.rollout import resolve_actor
    from tritonops.control_plane.webhooks import request_retrain

    results = request_retrain(load_settings(), model, actor=resolve_actor(actor), reason=reason)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            colour = "green" if r.outcome == "ok" else "red"
            console.print(f"[{colour}]{r.outcome}[/] {r.hook}: {r.detail} ({r.attempts} attempt(s))")
    if not results:
        raise WebhookError(f"retrain {model!r}: no configured webhook takes manual triggers for this model")
    failed = [r.hook for r in results if r.outcome != "ok"]
    if failed:
        raise WebhookError(f"retrain {model!r}: delivery failed for {failed}; see `tritonops webhooks log {model}`")


@webhooks_app.command("log")
def log(
    model: str | None = typer.Argument(None, help="Only this model's deliveries."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest deliveries to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the deliveries as JSON."),
) -> None:
    """Every webhook delivery, newest first: when, which hook, model, trigger, attempts, HTTP status, outcome."""
    from tritonops.control_plane.webhooks import DeliveryLog

    with DeliveryLog(load_settings().state) as deliveries:
        entries = deliveries.entries(model, limit)
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    table = Table("id", "at", "hook", "model", "trigger", "attempts", "status", "outcome", "detail")
    for e in entries:
        at = datetime.fromtimestamp(e.at, UTC).isoformat(timespec="seconds")
        status = "-" if e.status_code is None else str(e.status_code)
        table.add_row(str(e.id), at, e.hook, e.model, e.event, str(e.attempts), status, e.outcome, e.detail)
    console.print(table)
