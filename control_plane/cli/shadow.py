"""``tritonops shadow start|stop|report``: mirror live's traffic to a candidate, compare, never return its answers.

Thin: parse, call ``tritonops.control_plane.rollout.shadow`` / ``stop_shadow`` or build the report from the fleet's
``/metrics`` (``tritonops.control_plane.shadow``), render. In remote mode (``--url`` / ``TRITONOPS_URL``) the
controller does each (``/v1/models/{model}/shadow``) and its answers become the same views.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.drift import METRICS_URL_HELP, resolve_metrics_urls
from tritonops.control_plane.cli.output import console, print_json, print_table
from tritonops.control_plane.cli.remote import controller, refuse_actor
from tritonops.control_plane.cli.rollout import _actor, _render

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
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """Mirror SHARE of MODEL's answered rows to VERSION on every endpoint (re-run to change the share)."""
    if api := controller():
        refuse_actor(actor)
        _render(api.shadow_start(model, version, share, reason=reason), as_json)
        return
    from tritonops.control_plane.rollout import shadow as start_shadow

    settings = options.settings(repository, state)
    _render(start_shadow(settings, model, version, share, actor=_actor(actor), reason=reason), as_json)


@shadow_app.command("stop")
def stop(
    model: str = typer.Argument(..., help="Model name."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """End MODEL's shadow: the live model reloads without mirroring."""
    if api := controller():
        refuse_actor(actor)
        _render(api.shadow_stop(model, reason=reason), as_json)
        return
    from tritonops.control_plane.rollout import stop_shadow

    settings = options.settings(repository, state)
    _render(stop_shadow(settings, model, actor=_actor(actor), reason=reason), as_json)


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@shadow_app.command("report")
def report(
    model: str = typer.Argument(..., help="Model name."),
    metrics_url: list[str] = typer.Option([], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help=METRICS_URL_HELP),
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """Counts since the shadow started, over every endpoint: rows mirrored, dropped, compared, label agreement,
    |probability difference|, shadow errors by reason and shadow latency."""
    from tritonops.control_plane.views import ShadowPairView, ShadowReportView, from_shadow_reports

    if api := controller():
        if metrics_url:
            from tritonops.errors import ConfigurationError

            raise ConfigurationError(
                "--metrics-url: not taken in remote mode; the controller scrapes the fleet it knows"
            )
        pairs = [ShadowPairView.model_validate(r) for r in api.shadow_report(model)]
        view = ShadowReportView(model=model, reports=pairs)
    else:
        from tritonops.control_plane.metrics import scrape
        from tritonops.control_plane.shadow import shadow_reports

        snapshots = [scrape(url) for url in resolve_metrics_urls(options.settings(state=state), metrics_url)]
        view = from_shadow_reports(model, shadow_reports(snapshots, model))
    if as_json:
        print_json(view)
        return
    if not view.reports:
        console().print(
            f"no shadow counters for model {model!r}: start one with `tritonops shadow start`", markup=False
        )
        return
    for r in view.reports:
        errors = ", ".join(f"{reason} {count:.0f}" for reason, count in r.errors.items() if count) or "0"
        rows = [
            [name, value]
            for name, value in (
                ("rows mirrored", f"{r.mirrored_rows:.0f}"),
                ("rows dropped (queue full)", f"{r.dropped_rows:.0f}"),
                ("rows compared", f"{r.compared_rows:.0f}"),
                ("label agreement", _number(r.agreement)),
                ("identical probabilities", f"{r.identical_rows:.0f}"),
                ("mean |dp|", _number(r.mean_abs_prob_diff, 3)),
                ("p99 |dp|", _number(r.p99_abs_prob_diff, 3)),
                ("shadow errors", errors),
                ("shadow p99 ms per batch", _number(r.shadow_p99_ms, 3)),
            )
        ]
        print_table(
            ["measure", "value"], rows, title=f"{model}: shadow v{r.shadow_version} beside live v{r.live_version}"
        )
