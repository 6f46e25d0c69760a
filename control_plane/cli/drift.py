"""``tritonops drift NAME``: per-feature drift of the live version over a window, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.cli.remote import controller
from tritonops.control_plane.discovery import discover
from tritonops.control_plane.drift import (
    PREDICTION,
    DriftConfig,
    DriftReport,
    FeatureDrift,
    parse_duration,
    report_from_dict,
    report_to_dict,
)
from tritonops.control_plane.guardrails import load_policy, measure_drift
from tritonops.control_plane.metrics import SnapshotStore, metrics_urls
from tritonops.control_plane.state import StateStore, now_iso
from tritonops.errors import ConfigurationError
from tritonops.settings import load_settings

_BARS = " ▁▂▃▄▅▆▇█"

METRICS_URL_HELP = (
    "Triton /metrics URL to scrape (repeatable; also $TRITONOPS_METRICS_URLS, space separated). "
    "Default: each fleet endpoint's gRPC port + 1, e.g. 10.0.0.5:8001 -> http://10.0.0.5:8002/metrics."
)


def resolve_metrics_urls(explicit: list[str]) -> list[str]:
    """``--metrics-url`` values, else the fleet's endpoints from the state file."""
    settings = load_settings()
    fleet: list[str] = []
    if not explicit:
        with StateStore.open(settings.state) as store:
            fleet = discover(settings.fleet, store)
        if not fleet:
            raise ConfigurationError(
                "--metrics-url: none given and the fleet is empty; pass --metrics-url or add endpoints with "
                "`tritonops fleet add HOST:PORT`"
            )
    return metrics_urls(explicit, fleet)


def sparkline(shares: tuple[float, ...]) -> str:
    """One character per bin, the tallest bin full height."""
    top = max(shares) if shares else 0.0
    if top <= 0:
        return " " * len(shares)
    return "".join(_BARS[round(s / top * (len(_BARS) - 1))] for s in shares)


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _verdict(f: FeatureDrift) -> str:
    if not f.enough_data:
        return "[dim]too few rows[/]"
    return "[bold red]DRIFT[/]" if f.drifted else "[green]ok[/]"


def render(report: DriftReport) -> None:
    window = (
        f"last {report.window_seconds:.0f} s" if report.window_seconds is not None else "since the version was loaded"
    )
    console.print(f"[bold]{report.model}[/] version {report.version}: {report.rows:.0f} rows scored, {window}")
    for note in report.notes:
        console.print(f"  [yellow]note:[/] {note}")
    table = Table(
        "feature",
        "kind",
        "rows",
        "method",
        "score",
        "threshold",
        "verdict",
        "PSI",
        "JS",
        "KS",
        "chi² p",
        "reference",
        "live",
    )
    rows = [*report.features, *([report.prediction] if report.prediction else [])]
    for f in rows:
        table.add_row(
            "(class mix)" if f.name == PREDICTION else f.name,
            f.kind,
            f"{f.live_rows:.0f}",
            f.method.value,
            _number(f.score),
            f"{'<' if f.method.is_p_value else '>='} {f.threshold:g}",
            _verdict(f),
            f"{_number(f.psi)} {f.psi_band or ''}".strip(),
            _number(f.jensen_shannon),
            _number(f.ks.statistic if f.ks else None),
            _number(f.chi_squared.p_value if f.chi_squared else None),
            sparkline(f.reference),
            sparkline(f.live_shares()),
        )
    console.print(table)
    if not report.enough_data:
        console.print(
            f"[yellow]not enough data:[/] {report.rows:.0f} rows in the window, at least {report.min_rows} needed "
            "for a verdict; no drift is reported"
        )
        return
    share = f"{len(report.drifted_features)}/{len(report.features)} features drifted"
    if report.dataset_drift:
        console.print(f"[bold red]dataset drift[/]: {share} (threshold share {report.drift_share:g})")
    else:
        console.print(f"[green]no dataset drift[/]: {share} (threshold share {report.drift_share:g})")
    if report.prediction_drift:
        console.print("[bold red]prediction drift[/]: the class mix moved away from the reference")


@app.command("drift")
def drift(
    model: str = typer.Argument(..., help="Model name."),
    window: str = typer.Option(
        "15m", "--window", "-w", help="Look back this far (30s, 15m, 2h) using recorded snapshots; 'load' = since load."
    ),
    version: int | None = typer.Option(None, "--version", help="Version to check (default: the live one)."),
    metrics_url: list[str] = typer.Option([], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help=METRICS_URL_HELP),
    policy: Path | None = typer.Option(
        None, "--policy", help="Guardrail policy file (YAML/TOML) whose drift thresholds to use."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    html_report: Path | None = typer.Option(
        None,
        "--report",
        help="Also write the report as one self-contained HTML page (histograms per feature, the most drifted "
        "captured rows) here; in remote mode the controller renders it.",
    ),
) -> None:
    """Drift of each input feature and of the class mix against the manifest's reference.

    Snapshots of the counters are kept in the state file; with none old enough the window starts at the oldest one,
    and with none at all the counters count since the version was loaded. Each run records a snapshot too.
    """
    if api := controller():
        if policy is not None or metrics_url:
            raise ConfigurationError(
                "--policy / --metrics-url: not taken in remote mode; the controller uses the model's stored policy "
                "and scrapes the fleet it knows"
            )
        report = report_from_dict(api.drift(model, window, version))
    else:
        report = _measure(model, window, version, metrics_url, policy)
    if as_json:
        typer.echo(json.dumps(report_to_dict(report), indent=2))
    else:
        render(report)
    if html_report is not None:
        from tritonops.control_plane.drift_html import write_html, write_page
        from tritonops.control_plane.drift_rows import captured_drifted_rows

        if api:  # the controller's page: its captured rows live with it
            written = write_page(api.drift_report(model, window, version), html_report)
        else:
            rows = captured_drifted_rows(load_settings(), report)
            written = write_html(report, html_report, generated_at=now_iso(), drifted_rows=rows)
        typer.echo(f"drift report written to {written}", err=as_json)


def _measure(model: str, window: str, version: int | None, metrics_url: list[str], policy: Path | None) -> DriftReport:
    settings = load_settings()
    seconds = None if window == "load" else parse_duration(window)
    config = DriftConfig()
    if policy is not None:
        loaded = load_policy(policy)
        config = loaded.drift.thresholds if loaded.drift is not None else config
    urls = resolve_metrics_urls(metrics_url)
    with SnapshotStore(settings.state) as history:
        return measure_drift(
            settings, model, urls, version=version, window_seconds=seconds, config=config, history=history
        )
