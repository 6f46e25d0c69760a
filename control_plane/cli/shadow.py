"""``tritonops shadow start|stop|report``: mirror live's traffic to a candidate, compare, never return its answers.

Thin: parse, call ``tritonops.control_plane.rollout.shadow`` / ``stop_shadow`` or build the report from the fleet's
``/metrics`` (``tritonops.control_plane.shadow``), render.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.cli.drift import METRICS_URL_HELP, resolve_metrics_urls
from tritonops.control_plane.cli.rollout import _ACTOR_HELP, _REASON_HELP, _actor, _render
from tritonops.control_plane.metrics import scrape
from tritonops.control_plane.rollout import shadow as start_shadow
from tritonops.control_plane.rollout import stop_shadow
from tritonops.control_plane.shadow import shadow_reports
from tritonops.settings import load_settings

shadow_app = typer.Typer(
    help="Shadow scoring: a copy of live's requests scored by a candidate and compared; callers only get live.",
    no_args_is_help=True,
)
app.add_typer(shadow_app, name="shadow")


@shadow_app.command("start")
def start(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to score in the shadow."),
    share: float = typer.Option(1.0, "--share", help="Share of live's answered rows mirrored, in (0, 1]."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
    reason: str = typer.Option("", "--reason", help=_REASON_HELP),
) -> None:
    """Mirror SHARE of MODEL's answered rows to VERSION on every endpoint (re-run to change the share)."""
    _render(start_shadow(load_settings(), model, version, share, actor=_actor(actor), reason=reason))


@shadow_app.command("stop")
def stop(
    model: str = typer.Argument(..., help="Model name."),
    actor: str | None = typer.Option(None, "--actor", help=_ACTOR_HELP),
    reason: str = typer.Option("", "--reason", help=_REASON_HELP),
) -> None:
    """End MODEL's shadow: the live model reloads without mirroring."""
    _render(stop_shadow(load_settings(), model, actor=_actor(actor), reason=reason))


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@shadow_app.command("report")
def report(
    model: str = typer.Argument(..., help="Model name."),
    metrics_url: list[str] = typer.Option([], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help=METRICS_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
) -> None:
    """Counts since the shadow started, over every endpoint: rows mirrored, dropped, compared, label agreement,
    |probability difference|, shadow errors by reason and shadow latency."""
    snapshots = [scrape(url) for url in resolve_metrics_urls(metrics_url)]
    reports = shadow_reports(snapshots, model)
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in reports]))
        return
    if not reports:
        console.print(f"no shadow counters for model {model!r}: start one with `tritonops shadow start`")
        return
    for r in reports:
        table = Table("measure", "value", title=f"{model}: shadow v{r.shadow_version} beside live v{r.live_version}")
        errors = ", ".join(f"{reason} {count:.0f}" for reason, count in r.errors.items() if count) or "0"
        for name, value in (
            ("rows mirrored", f"{r.mirrored:.0f}"),
            ("rows dropped (queue full)", f"{r.dropped:.0f}"),
            ("rows compared", f"{r.compared:.0f}"),
            ("label agreement", _number(r.agreement)),
            ("identical probabilities", f"{r.identical:.0f}"),
            ("mean |dp|", _number(r.mean_prob_diff, 3)),
            ("p99 |dp|", _number(r.prob_diff_quantile(0.99), 3)),
            ("shadow errors", errors),
            ("shadow p99 ms per batch", _number(r.latency_p99_ms(), 3)),
        ):
            table.add_row(name, value)
        console.print(table)
