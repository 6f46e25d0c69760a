"""``tritonops status|deploy|promote|canary|rollback|history|reconcile`` and ``tritonops fleet add|remove|list``.

Thin: parse, call one ``tritonops.control_plane.rollout`` / ``tritonops.control_plane.fleet`` function (imported
inside the command, so ``--help`` stays instant), render a table or ``--json``. In remote mode (``--url`` /
``TRITONOPS_URL``) the same call goes to the controller's API, whose answer is the same library result: it becomes
the same view, so the table and ``--json`` are the same either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import Cell, console, print_json, print_table, styled
from tritonops.control_plane.cli.remote import controller, refuse_actor

if TYPE_CHECKING:
    from tritonops.control_plane.rollout import RolloutResult
    from tritonops.control_plane.views import HistoryView, ReconcileView, RolloutView, StatusView

fleet_app = typer.Typer(help="The Triton endpoints the control plane keeps in the desired state.", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")

# Each render_* prints one view (tritonops.control_plane.views): the same objects --json prints, wherever they
# were computed.


def render_rollout(view: RolloutView) -> None:
    prefix = styled("dry run", "yellow") if view.dry_run else styled("ok", "bold green")
    console().print(prefix, f"{view.action} {view.model}: {view.detail} ({view.seconds:.1f} s)", markup=False)
    for smoke in view.smoke:
        console().print(
            f"  smoke {smoke.endpoint} {smoke.name} v{smoke.version}: {smoke.rows} rows match, "
            f"max |dp| {smoke.max_prob_diff:.2g}, p99 {smoke.p99_ms:.1f} ms",
            markup=False,
        )


def render_status(view: StatusView) -> None:
    if not view.endpoints:
        console().print("the fleet is empty: add endpoints with `tritonops fleet add HOST:PORT`", markup=False)
        return
    rows: list[list[Cell]] = []
    for endpoint in view.endpoints:
        if endpoint.error:
            rows.append([endpoint.endpoint, "-", "-", "-", "-", "-", "-", "-", styled(endpoint.error, "red")])
            continue
        for m in endpoint.models:
            rows.append(
                [
                    endpoint.endpoint,
                    m.model,
                    str(m.live) if m.live is not None else "-",
                    f"{m.canary} @ {m.canary_weight:g}" if m.canary is not None else "-",
                    ",".join(map(str, m.ready_versions)) or "-",
                    ",".join(map(str, m.canary_ready_versions)) or "-",
                    str(m.requests),
                    str(m.failures),
                    styled("in sync", "green") if m.in_sync else styled("; ".join(m.divergence), "red"),
                ]
            )
    from tritonops.control_plane.metrics import FRONTEND_GAP

    columns = ["endpoint", "model", "live", "canary", "ready", "canary ready", "requests", "errors", "divergence"]
    caption = (
        "errors = Triton's failure count: requests our backend refused count as successes there "
        f"(tritonops watch/top add them); {FRONTEND_GAP}"
    )
    print_table(columns, rows, caption=caption)


def render_history(view: HistoryView) -> None:
    colors = {"ok": "green", "refused": "yellow", "failed": "red", "interrupted": "red", "started": "dim"}
    rows: list[list[Cell]] = [
        [
            str(event.id),
            event.at,
            event.actor,
            event.action,
            "-" if event.from_version is None else str(event.from_version),
            "-" if event.to_version is None else str(event.to_version),
            styled(event.result, colors.get(event.result, "white")),
            event.reason,
            event.detail,
        ]
        for event in view.events
    ]
    print_table(["#", "time (UTC)", "actor", "action", "from", "to", "result", "reason", "detail"], rows)


def render_reconcile(view: ReconcileView) -> None:
    for note in view.interrupted:
        console().print(styled("closed interrupted rollout", "yellow"), note, markup=False)
    for endpoint in view.endpoints:
        console().print(
            styled(endpoint.endpoint, "bold"),
            f": {len(endpoint.divergence)} diverged, {len(endpoint.actions)} actions",
            sep="",
            markup=False,
        )
        for line in endpoint.divergence:
            console().print(f"  diverged {line}", markup=False)
        for line in endpoint.actions:
            console().print("  ", styled("did", "green"), f"      {line}", sep="", markup=False)
        for line in endpoint.errors:
            console().print("  ", styled("error", "red"), f"    {line}", sep="", markup=False)
    for line in view.skipped:
        console().print(styled("skipped", "yellow"), line, markup=False)
    for line in view.published:
        console().print(f"repository: {line}", markup=False)
    for line in view.not_published:
        console().print(styled("repository", "yellow"), f": {line}", sep="", markup=False)
    if view.ok:
        in_sync = not view.dry_run or view.divergence_count == 0
        console().print(styled("in sync", "bold green") if in_sync else "diverged from desired state (dry run)")


def _render(result: RolloutResult, as_json: bool) -> None:
    from tritonops.control_plane.views import from_rollout

    view = from_rollout(result)
    if as_json:
        print_json(view)
    else:
        render_rollout(view)


def _actor(value: str | None) -> str:
    from tritonops.control_plane.rollout import resolve_actor

    return resolve_actor(value)


@app.command("status")
def status(
    model: str | None = typer.Argument(None, help="Only this model (default: every model in the state)."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """Per endpoint: versions ready, desired live and canary, request and error counts, divergence from desired."""
    from tritonops.control_plane.views import from_status

    if api := controller():
        report = api.status(model)
    else:
        from tritonops.control_plane.rollout import status as fleet_status

        report = fleet_status(options.settings(repository, state), model)
    view = from_status(report)
    if as_json:
        print_json(view)
    else:
        render_status(view)


@app.command("deploy")
def deploy(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to load as the candidate <model>__canary (no traffic)."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """Load VERSION beside live as the candidate, after its parity and smoke gates pass."""
    if api := controller():
        refuse_actor(actor)
        _render(api.deploy(model, version, reason=reason), as_json)
        return
    from tritonops.control_plane.rollout import deploy as deploy_candidate

    result = deploy_candidate(options.settings(repository, state), model, version, actor=_actor(actor), reason=reason)
    _render(result, as_json)


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
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """Make VERSION live everywhere once its gates pass (parity, optional shadow agreement, smoke on every
    endpoint, optional latency)."""
    if api := controller():
        refuse_actor(actor)
        if min_shadow_agreement is not None:
            from tritonops.errors import ConfigurationError

            raise ConfigurationError("--min-shadow-agreement: not taken in remote mode yet; run it on the controller")
        result = api.promote(model, version, reason=reason, dry_run=dry_run, max_latency_ms=max_latency_ms)
        _render(result, as_json)
        return
    from tritonops.control_plane.rollout import promote as promote_version

    result = promote_version(
        options.settings(repository, state),
        model,
        version,
        actor=_actor(actor),
        reason=reason,
        dry_run=dry_run,
        max_latency_ms=max_latency_ms,
        min_shadow_agreement=min_shadow_agreement,
        shadow_metrics_urls=metrics_url,
    )
    _render(result, as_json)


@app.command("canary")
def canary(
    model: str = typer.Argument(..., help="Model name."),
    version: int | None = typer.Argument(None, help="Candidate version (not needed with --abort)."),
    weight: float = typer.Option(
        0.1, "--weight", help="Share of all requests to MODEL the server sends to the canary, in (0, 1]."
    ),
    abort: bool = typer.Option(False, "--abort", help="End the canary: all traffic to live, candidate unloaded."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """Start (or re-weight) a canary of VERSION beside live, or end it with --abort."""
    if version is None and not abort:
        raise typer.BadParameter("give the candidate VERSION, or --abort", param_hint="VERSION")
    if api := controller():
        from tritonops.control_plane.rollout import check_weight

        refuse_actor(actor)
        if abort or version is None:
            _render(api.abort_canary(model, reason=reason), as_json)
        else:
            _render(api.canary(model, version, check_weight(weight), reason=reason), as_json)
        return
    from tritonops.control_plane.rollout import abort_canary
    from tritonops.control_plane.rollout import canary as start_canary

    settings = options.settings(repository, state)
    if abort or version is None:
        _render(abort_canary(settings, model, actor=_actor(actor), reason=reason), as_json)
        return
    _render(start_canary(settings, model, version, weight, actor=_actor(actor), reason=reason), as_json)


@app.command("rollback")
def rollback(
    model: str = typer.Argument(..., help="Model name."),
    to: int | None = typer.Option(None, "--to", help="Version to go back to (default: the previous live)."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """Make the previous live version (or --to VERSION) live again everywhere; ends any canary."""
    if api := controller():
        refuse_actor(actor)
        _render(api.rollback(model, to=to, reason=reason), as_json)
        return
    from tritonops.control_plane.rollout import rollback as rollback_version

    settings = options.settings(repository, state)
    _render(rollback_version(settings, model, actor=_actor(actor), to=to, reason=reason), as_json)


@app.command("history")
def history(
    model: str = typer.Argument(..., help="Model name."),
    limit: int = typer.Option(50, "--limit", min=1, help="Show the last N events."),
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """The model's audit log: who did what, when, from which version to which, why, and how it ended."""
    from tritonops.control_plane.views import from_history

    if api := controller():
        events = api.history(model, limit)
    else:
        from tritonops.control_plane.rollout import history as model_history

        events = model_history(options.settings(state=state), model, limit)
    view = from_history(model, events)
    if as_json:
        print_json(view)
    else:
        render_history(view)


@app.command("reconcile")
def reconcile(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report how endpoints diverge from desired state."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    as_json: bool = options.JSON,
) -> None:
    """Make every endpoint serve exactly the desired versions (safe to repeat, e.g. after a server restart).

    Exits non-zero when an endpoint could not be brought there; with --json the report is printed first.
    """
    from tritonops.control_plane.errors import FleetApplyError
    from tritonops.control_plane.views import from_reconcile

    if api := controller():
        refuse_actor(actor)
        report = api.reconcile(dry_run=dry_run)
    else:
        from tritonops.control_plane.discovery import discover
        from tritonops.control_plane.fleet import reconcile as reconcile_fleet
        from tritonops.control_plane.state import StateStore

        settings = options.settings(repository, state)
        with StateStore.open(settings.state, create=False) as store:
            report = reconcile_fleet(
                store,
                settings.repository,
                settings.admin_headers(),
                actor=_actor(actor),
                dry_run=dry_run,
                endpoints=discover(settings.fleet, store),
            )
    view = from_reconcile(report, dry_run)
    if as_json:
        print_json(view)
    else:
        render_reconcile(view)
    if not view.ok:
        failures = {e.endpoint: "; ".join(e.errors) for e in view.endpoints if e.errors}
        if view.skipped:
            failures["skipped"] = "; ".join(view.skipped)
        raise FleetApplyError("reconcile did not finish on every endpoint", failures)


@fleet_app.command("add")
def add(
    endpoint: str = typer.Argument(..., help="Triton gRPC endpoint, host:port."),
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
) -> None:
    """Add an endpoint (creating the state file if needed); run `tritonops reconcile` to bring it up to date."""
    if api := controller():
        refuse_actor(actor)
        api.fleet_add(endpoint)
    else:
        from tritonops.control_plane.rollout import fleet_add

        fleet_add(options.settings(state=state), endpoint, actor=_actor(actor))
    console().print(f"added {endpoint}", markup=False)


@fleet_app.command("remove")
def remove(
    endpoint: str = typer.Argument(..., help="Triton gRPC endpoint, host:port."),
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
) -> None:
    """Remove an endpoint from the fleet (what it serves is left as it is)."""
    if api := controller():
        refuse_actor(actor)
        api.fleet_remove(endpoint)
    else:
        from tritonops.control_plane.rollout import fleet_remove

        fleet_remove(options.settings(state=state), endpoint, actor=_actor(actor))
    console().print(f"removed {endpoint}", markup=False)


@fleet_app.command("ready")
def ready(
    endpoint: str = typer.Argument(..., help="Triton gRPC endpoint, host:port."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """Exit 0 only when ENDPOINT serves the desired state (a readiness probe for a Triton pod)."""
    from tritonops.control_plane.errors import NotServingError
    from tritonops.control_plane.readiness import not_serving

    missing = not_serving(options.settings(repository, state), endpoint)
    if as_json:
        from tritonops.control_plane.views import ReadinessView

        print_json(ReadinessView(endpoint=endpoint, serving=not missing, missing=missing))
    if missing:
        raise NotServingError(endpoint, missing)
    if not as_json:
        console().print(f"{endpoint} serves the desired state", markup=False)


@fleet_app.command("list")
def list_endpoints(state: str | None = options.STATE, as_json: bool = options.JSON) -> None:
    """List the fleet's endpoints, one per line."""
    from tritonops.control_plane.views import FleetView

    if api := controller():
        endpoints = api.fleet_list()
    else:
        from tritonops.control_plane.rollout import fleet_list

        endpoints = fleet_list(options.settings(state=state))
    if as_json:
        print_json(FleetView(endpoints=endpoints))
        return
    for endpoint in endpoints:
        console().print(endpoint, markup=False)
