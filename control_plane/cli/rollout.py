"""``tritonops status|deploy|promote|canary|rollback|history|reconcile`` and ``tritonops fleet add|remove|list``.

Thin: parse, call one ``tritonops.control_plane.rollout`` / ``tritonops.control_plane.fleet`` function, render with
rich.
"""

from __future__ import annotations

import typer
from rich.table import Table

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.cli.remote import controller, refuse_actor
from tritonops.control_plane.discovery import discover
from tritonops.control_plane.errors import FleetApplyError, NotServingError
from tritonops.control_plane.fleet import reconcile as reconcile_fleet
from tritonops.control_plane.metrics import FRONTEND_GAP
from tritonops.control_plane.readiness import not_serving
from tritonops.control_plane.rollout import (
    RolloutResult,
    abort_canary,
    check_weight,
    fleet_add,
    fleet_list,
    fleet_remove,
    resolve_actor,
)
from tritonops.control_plane.rollout import canary as start_canary
from tritonops.control_plane.rollout import deploy as deploy_candidate
from tritonops.control_plane.rollout import history as model_history
from tritonops.control_plane.rollout import promote as promote_version
from tritonops.control_plane.rollout import rollback as rollback_version
from tritonops.control_plane.rollout import status as fleet_status
from tritonops.control_plane.state import StateStore
from tritonops.errors import ConfigurationError
from tritonops.settings import load_settings

fleet_app = typer.Typer(help="The Triton endpoints the control plane keeps in the desired state.", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")

_ACTOR_HELP = "Who acts, for the audit log (default: $TRITONOPS_ACTOR, then $USER)."
_REASON_HELP = "Why, for the audit log."


def _actor(value: str | None) -> str:
    return resolve_actor(value)


def _render(result: RolloutResult) -> None:
    prefix = "[yellow]dry run[/]" if result.dry_run else "[bold green]ok[/]"
    console.print(f"{prefix} {result.action} {result.model}: {result.detail} ({result.seconds:.1f} s)")
    for smoke in result.smoke:
        console.print(
            f"  smoke {smoke.endpoint} {smoke.name} v{smoke.version}: {smoke.rows} rows match, "
            f"max |dp| {smoke.max_prob_diff:.2g}, p99 {smoke.p99_ms:.1f} ms"
        )


@app.command("status")
def status(
    model: str | None = typer.Argument(None, help="Only this model (default: every model in the state)."),
) -> None:
    """Per endpoint: versions ready, desired live and canary, request and error counts, drift."""
    api = controller()
    report = api.status(model) if api else fleet_status(load_settings(), model)
    if not report:
        console.print("the fleet is empty: add endpoints with `tritonops fleet add HOST:PORT`")
        return
    table = Table(
        "endpoint", "model", "live", "canary", "ready", "canary ready", "requests", "errors", "drift",
        caption=f"errors = Triton's failure count: requests our backend refused count as successes there "
        f"(tritonops watch/top add them); {FRONTEND_GAP}",
        caption_justify="left",
    )  # fmt: skip
    for endpoint in report:
        if endpoint.error:
            table.add_row(endpoint.endpoint, "-", "-", "-", "-", "-", "-", "-", f"[red]{endpoint.error}[/]")
            continue
        for m in endpoint.models:
            table.add_row(
                endpoint.endpoint,
                m.model,
                str(m.live) if m.live is not None else "-",
                f"{m.canary} @ {m.canary_weight:g}" if m.canary is not None else "-",
                ",".join(map(str, m.ready_versions)) or "-",
                ",".join(map(str, m.canary_ready_versions)) or "-",
                str(m.requests),
                str(m.failures),
                "[green]in sync[/]" if not m.drift else "[red]" + "; ".join(m.drift) + "[/]",
            )
    console.print(table)


@app.command("deploy")
def deploy(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to load as the candidate <model>__canary (no traffic)."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
    reason: str = typer.Option("", "--reason", help=_REASON_HELP),
) -> None:
    """Load VERSION beside live as the candidate, after its parity and smoke gates pass."""
    if api := controller():
        refuse_actor(actor)
        _render(api.deploy(model, version, reason=reason))
        return
    _render(deploy_candidate(load_settings(), model, version, actor=_actor(actor), reason=reason))


@app.command("promote")
def promote(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to make live."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Run every gate, change nothing."),
    max_latency_ms: float | None = typer.Option(
        None, "--max-latency-ms", help="Latency gate: p99 of the smoke request on each endpoint must not exceed it."
    ),
    min_shadow_agreement: float | None = typer.Option(
        None,
        "--min-shadow-agreement",
        help="Shadow gate: VERSION ran as a shadow (`tritonops shadow start`) and agreed with live on at least this "
        "share of the compared rows.",
    ),
    metrics_url: list[str] = typer.Option(
        [],
        "--metrics-url",
        envvar="TRITONOPS_METRICS_URLS",
        help="Triton /metrics URLs the shadow gate reads (default: each endpoint's gRPC port + 1).",
    ),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
    reason: str = typer.Option("", "--reason", help=_REASON_HELP),
) -> None:
    """Make VERSION live everywhere once its gates pass (parity, optional shadow agreement, smoke on every
    endpoint, optional latency)."""
    if api := controller():
        refuse_actor(actor)
        if min_shadow_agreement is not None:
            raise ConfigurationError("--min-shadow-agreement: not taken in remote mode yet; run it on the controller")
        _render(api.promote(model, version, reason=reason, dry_run=dry_run, max_latency_ms=max_latency_ms))
        return
    result = promote_version(
        load_settings(),
        model,
        version,
        actor=_actor(actor),
        reason=reason,
        dry_run=dry_run,
        max_latency_ms=max_latency_ms,
        min_shadow_agreement=min_shadow_agreement,
        shadow_metrics_urls=metrics_url,
    )
    _render(result)


@app.command("canary")
def canary(
    model: str = typer.Argument(..., help="Model name."),
    version: int | None = typer.Argument(None, help="Candidate version (not needed with --abort)."),
    weight: float = typer.Option(
        0.1, "--weight", help="Share of all requests to MODEL the server sends to the canary, in (0, 1]."
    ),
    abort: bool = typer.Option(False, "--abort", help="End the canary: all traffic to live, candidate unloaded."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
    reason: str = typer.Option("", "--reason", help=_REASON_HELP),
) -> None:
    """Start (or re-weight) a canary of VERSION beside live, or end it with --abort."""
    if version is None and not abort:
        raise typer.BadParameter("give the candidate VERSION, or --abort", param_hint="VERSION")
    if api := controller():
        refuse_actor(actor)
        if abort or version is None:
            _render(api.abort_canary(model, reason=reason))
        else:
            _render(api.canary(model, version, check_weight(weight), reason=reason))
        return
    settings = load_settings()
    if abort or version is None:
        _render(abort_canary(settings, model, actor=_actor(actor), reason=reason))
        return
    _render(start_canary(settings, model, version, weight, actor=_actor(actor), reason=reason))


@app.command("rollback")
def rollback(
    model: str = typer.Argument(..., help="Model name."),
    to: int | None = typer.Option(None, "--to", help="Version to go back to (default: the previous live)."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
    reason: str = typer.Option("", "--reason", help=_REASON_HELP),
) -> None:
    """Make the previous live version (or --to VERSION) live again everywhere; ends any canary."""
    if api := controller():
        refuse_actor(actor)
        _render(api.rollback(model, to=to, reason=reason))
        return
    _render(rollback_version(load_settings(), model, actor=_actor(actor), to=to, reason=reason))


@app.command("history")
def history(
    model: str = typer.Argument(..., help="Model name."),
    limit: int = typer.Option(50, "--limit", help="Show the last N events."),
) -> None:
    """The model's audit log: who did what, when, from which version to which, why, and how it ended."""
    table = Table("#", "time (UTC)", "actor", "action", "from", "to", "result", "reason", "detail")
    colors = {"ok": "green", "refused": "yellow", "failed": "red", "interrupted": "red", "started": "dim"}
    api = controller()
    for event in api.history(model, limit) if api else model_history(load_settings(), model, limit):
        table.add_row(
            str(event.id),
            event.at,
            event.actor,
            event.action,
            "-" if event.from_version is None else str(event.from_version),
            "-" if event.to_version is None else str(event.to_version),
            f"[{colors.get(event.result, 'white')}]{event.result}[/]",
            event.reason,
            event.detail,
        )
    console.print(table)


@app.command("reconcile")
def reconcile(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report drift between desired and actual."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
) -> None:
    """Make every endpoint serve exactly the desired versions (safe to repeat, e.g. after a server restart)."""
    if api := controller():
        refuse_actor(actor)
        report = api.reconcile(dry_run=dry_run)
    else:
        settings = load_settings()
        with StateStore.open(settings.state) as store:
            report = reconcile_fleet(
                store,
                settings.repository,
                settings.admin_headers(),
                actor=_actor(actor),
                dry_run=dry_run,
                endpoints=discover(settings.fleet, store),
            )
    for note in report.interrupted:
        console.print(f"[yellow]closed interrupted rollout[/] {note}")
    for endpoint in report.endpoints:
        console.print(f"[bold]{endpoint.endpoint}[/]: {len(endpoint.drift)} drift, {len(endpoint.actions)} actions")
        for line in endpoint.drift:
            console.print(f"  drift   {line}")
        for line in endpoint.actions:
            console.print(f"  [green]did[/]     {line}")
        for line in endpoint.errors:
            console.print(f"  [red]error[/]   {line}")
    for line in report.skipped:
        console.print(f"[yellow]skipped[/] {line}")
    for line in report.published:
        console.print(f"repository: {line}")
    for line in report.not_published:
        console.print(f"[yellow]repository[/]: {line}")
    if not report.ok:
        failures = {r.endpoint: "; ".join(r.errors) for r in report.endpoints if r.errors}
        if report.skipped:
            failures["skipped"] = "; ".join(report.skipped)
        raise FleetApplyError("reconcile did not finish on every endpoint", failures)
    console.print("[bold green]in sync[/]" if not dry_run or report.drift_count == 0 else "drift found (dry run)")


@fleet_app.command("add")
def add(
    endpoint: str = typer.Argument(..., help="Triton gRPC endpoint, host:port."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
) -> None:
    """Add an endpoint; run `tritonops reconcile` to bring it to the desired state."""
    if api := controller():
        refuse_actor(actor)
        api.fleet_add(endpoint)
    else:
        fleet_add(load_settings(), endpoint, actor=_actor(actor))
    console.print(f"added {endpoint}")


@fleet_app.command("remove")
def remove(
    endpoint: str = typer.Argument(..., help="Triton gRPC endpoint, host:port."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
) -> None:
    """Remove an endpoint from the fleet (what it serves is left as it is)."""
    if api := controller():
        refuse_actor(actor)
        api.fleet_remove(endpoint)
    else:
        fleet_remove(load_settings(), endpoint, actor=_actor(actor))
    console.print(f"removed {endpoint}")


@fleet_app.command("ready")
def ready(endpoint: str = typer.Argument(..., help="Triton gRPC endpoint, host:port.")) -> None:
    """Exit 0 only when ENDPOINT serves the desired state (a readiness probe for a Triton pod)."""
    missing = not_serving(load_settings(), endpoint)
    if missing:
        raise NotServingError(endpoint, missing)
    console.print(f"{endpoint} serves the desired state")


@fleet_app.command("list")
def list_endpoints() -> None:
    """List the fleet's endpoints."""
    api = controller()
    for endpoint in api.fleet_list() if api else fleet_list(load_settings()):
        console.print(endpoint)
