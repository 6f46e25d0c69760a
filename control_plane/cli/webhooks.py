"""``tritonops retrain MODEL --reason`` and ``tritonops webhooks log``: outbound webhooks by hand, and what was sent."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import Cell, print_json, print_table, styled

webhooks_app = typer.Typer(help="Outbound webhooks (retraining triggers): the delivery log.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@app.command("retrain")
def retrain(
    model: str = typer.Argument(..., help="Model name."),
    reason: str = typer.Option(..., "--reason", help="Why: sent to the webhooks and kept in the audit log."),
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    as_json: bool = options.JSON,
) -> None:
    """Call the configured retraining webhooks for MODEL now (TRITONOPS_WEBHOOKS), with an audit event."""
    from tritonops.control_plane.errors import WebhookError
    from tritonops.control_plane.rollout import resolve_actor
    from tritonops.control_plane.views import from_retrain
    from tritonops.control_plane.webhooks import request_retrain

    view = from_retrain(
        model, request_retrain(options.settings(state=state), model, actor=resolve_actor(actor), reason=reason)
    )
    if as_json:
        print_json(view)
    else:
        rows: list[list[Cell]] = [
            [styled(r.outcome, "green" if r.outcome == "ok" else "red"), r.hook, str(r.attempts), r.detail]
            for r in view.results
        ]
        print_table(["outcome", "hook", "attempts", "detail"], rows)
    if not view.results:
        raise WebhookError(f"retrain {model!r}: no configured webhook takes manual triggers for this model")
    failed = [r.hook for r in view.results if r.outcome != "ok"]
    if failed:
        raise WebhookError(f"retrain {model!r}: delivery failed for {failed}; see `tritonops webhooks log {model}`")


@webhooks_app.command("log")
def log(
    model: str | None = typer.Argument(None, help="Only this model's deliveries."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest deliveries to show."),
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """Every webhook delivery, newest first: when, which hook, model, trigger, attempts, HTTP status, outcome."""
    from tritonops.control_plane.state import require_state
    from tritonops.control_plane.views import from_deliveries
    from tritonops.control_plane.webhooks import DeliveryLog

    settings = options.settings(state=state)
    require_state(settings.state)
    with DeliveryLog(settings.state) as deliveries:
        view = from_deliveries(deliveries.entries(model, limit))
    if as_json:
        print_json(view)
        return
    rows = [
        [
            str(e.id),
            datetime.fromtimestamp(e.at, UTC).isoformat(timespec="seconds"),
            e.hook,
            e.model,
            e.event,
            str(e.attempts),
            "-" if e.status_code is None else str(e.status_code),
            e.outcome,
            e.detail,
        ]
        for e in view.deliveries
    ]
    print_table(["id", "at", "hook", "model", "trigger", "attempts", "status", "outcome", "detail"], rows)
