"""``tritonops top``: the dashboard's numbers in a terminal, for users without Grafana.

Every refresh scrapes each Triton ``/metrics`` once (``tritonops.control_plane.metrics.fleet_window``) and shows,
per model and version served: request rate, error rate (Triton failures + requests the backend rejected), p50/p99,
mean queue and compute time, batch size, cache hit rate, its role in the control plane's desired state (live / canary)
and the data-drift verdict of live versions over ``--drift-window``. ``--once --json`` prints one ``TopView``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.drift import METRICS_URL_HELP, parse_duration, resolve_metrics_urls
from tritonops.control_plane.cli.output import build_table, console, plain_table, print_json
from tritonops.settings import Settings

if TYPE_CHECKING:
    from rich.table import Table

    from tritonops.control_plane.drift import DriftReport
    from tritonops.control_plane.metrics import FleetWindow, MemoryHistory, VersionStats
    from tritonops.control_plane.state import ModelState
    from tritonops.control_plane.views import TopRowView, TopView

COLUMNS = (
    "model",
    "version",
    "role",
    "req/s",
    "errors",
    "p50 ms",
    "p99 ms",
    "queue ms",
    "compute ms",
    "batch",
    "cache hits",
    "drift",
)


def role_of(model: str, version: str, states: Mapping[str, ModelState]) -> str:
    """``live`` / ``canary`` per the desired state, ``-`` for what the control plane doesn't manage."""
    from tritonops.contract.names import canary_alias

    for state in states.values():
        if model == state.name and state.live is not None and version == str(state.live):
            return "live"
        if model == canary_alias(state.name) and state.canary is not None and version == str(state.canary):
            return f"canary {state.canary_weight:.0%}"
    return "-"


def drift_verdict(report: DriftReport | None) -> str:
    if report is None:
        return "-"
    if not report.enough_data:
        return f"few rows ({report.rows:.0f})"
    if report.dataset_drift:
        return f"DRIFT {', '.join(report.drifted_features[:3])}"
    return "prediction drift" if report.prediction_drift else "ok"


def build_rows(
    stats: Mapping[tuple[str, str], VersionStats],
    states: Mapping[str, ModelState],
    drift: Mapping[tuple[str, str], DriftReport],
) -> list[TopRowView]:
    """Rows sorted by model and version; drift is keyed by (model, version) like ``stats``."""
    from tritonops.control_plane.views import top_row

    return [
        top_row(model, version, role_of(model, version, states), s, drift_verdict(drift.get((model, version))))
        for (model, version), s in sorted(stats.items(), key=lambda item: (item[0][0], int(item[0][1])))
    ]


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _cells(row: TopRowView) -> list[str]:
    return [
        row.model,
        row.version,
        row.role,
        _fmt(row.request_rate, "{:,.1f}"),
        _fmt(row.error_rate, "{:.2%}"),
        _fmt(row.p50_ms, "{:.2f}"),
        _fmt(row.p99_ms, "{:.2f}"),
        _fmt(row.mean_queue_ms, "{:.3f}"),
        _fmt(row.mean_compute_ms, "{:.3f}"),
        _fmt(row.avg_batch_size, "{:.1f}"),
        _fmt(row.cache_hit_rate, "{:.0%}"),
        row.drift,
    ]


def _caption(view: TopView) -> str:
    from tritonops.control_plane.metrics import FRONTEND_GAP

    span = f"{view.window_seconds:.1f} s" if view.window_seconds else "since load"
    failed = "".join(f"\n{url}: {why}" for url, why in view.scrape_failures.items())
    return (
        f"{view.endpoints_scraped}/{view.endpoints} endpoints, window {span}, "
        f"drift over {view.drift_window_seconds:.0f} s; errors: {FRONTEND_GAP}{failed}"
    )


def render(rows: Sequence[TopRowView], caption: str) -> Table:
    """The rich table of one refresh (a terminal, or ``rich.live``)."""
    return build_table(COLUMNS, [_cells(row) for row in rows], caption=caption)


def _print(view: TopView) -> None:
    if console().is_terminal:
        console().print(render(view.rows, _caption(view)))
    else:
        console().print(plain_table(COLUMNS, [_cells(r) for r in view.rows], caption=_caption(view)), markup=False)


def _states(settings: Settings) -> dict[str, ModelState]:
    from tritonops.control_plane.state import StateStore

    if settings.state_url is None and not settings.state_path.is_file():  # no control plane: roles unknown
        return {}
    with StateStore.open(settings.state, create=False) as store:
        return {state.name: state for state in store.models()}


def _drift(
    settings: Settings, states: Mapping[str, ModelState], now: FleetWindow, history: MemoryHistory, seconds: float
) -> dict[tuple[str, str], DriftReport]:
    """Drift of every live version over the last ``seconds`` (or as much history as there is)."""
    from tritonops.control_plane.desired import version_manifest
    from tritonops.control_plane.drift import DriftConfig
    from tritonops.control_plane.errors import ControlPlaneError
    from tritonops.control_plane.guardrails import drift_for_version
    from tritonops.control_plane.metrics import FleetWindow, window

    windows = {}
    for url, win in now.windows.items():
        before = history.at_or_before(url, win.latest.taken_at - seconds) or history.oldest(url)
        windows[url] = window(before, win.latest)
    longer = FleetWindow(windows, now.failures)
    reports = {}
    for state in states.values():
        if state.live is None:
            continue
        try:
            manifest = version_manifest(settings.repository, state.name, state.live)
        except ControlPlaneError:
            continue  # the repository at hand lacks this version: no reference, no verdict
        reports[(state.name, str(state.live))] = drift_for_version(manifest, longer, DriftConfig())
    return reports


def snapshot(
    settings: Settings,
    urls: Sequence[str],
    rates: MemoryHistory,
    drifts: MemoryHistory,
    interval: float,
    drift_seconds: float,
) -> TopView:
    """Scrape once, compare with the previous scrape (rates) and with ``drift_seconds`` ago (drift)."""
    from tritonops.control_plane.metrics import fleet_window
    from tritonops.control_plane.views import TopView

    fleet = fleet_window(urls, interval, rates)
    states = _states(settings)
    drift = _drift(settings, states, fleet, drifts, drift_seconds)
    for url, win in fleet.windows.items():
        drifts.record(url, win.latest)
    return TopView(
        endpoints=len(urls),
        endpoints_scraped=len(fleet.windows),
        window_seconds=fleet.seconds,
        drift_window_seconds=drift_seconds,
        scrape_failures=dict(fleet.failures),
        rows=build_rows(fleet.stats, states, drift),
    )


@app.command("top")
def top(
    metrics_url: list[str] = typer.Option([], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help=METRICS_URL_HELP),
    interval: float = typer.Option(2.0, "--interval", "-i", min=0.2, help="Seconds between refreshes."),
    drift_window: str = typer.Option("5m", "--drift-window", help="Window of the drift verdict (30s, 5m, 1h)."),
    once: bool = typer.Option(False, "--once", help="Scrape twice, INTERVAL apart, print one table and exit."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    as_json: bool = typer.Option(False, "--json", help="With --once: print the table as JSON (docs/cli.md)."),
) -> None:
    """Live table per model and version: req/s, errors, p50/p99, queue vs compute, batch size, cache, drift."""
    from rich.live import Live

    from tritonops.control_plane.metrics import MemoryHistory, fleet_window

    if as_json and not once:
        raise typer.BadParameter("--json prints one refresh: add --once", param_hint="--json")
    settings = options.settings(repository, state)
    urls = resolve_metrics_urls(settings, metrics_url)
    drift_seconds = parse_duration(drift_window, "--drift-window")
    rates = MemoryHistory(keep_seconds=interval * 3)
    drifts = MemoryHistory(keep_seconds=drift_seconds * 2)
    fleet_window(urls, interval, rates)  # the first scrape is the baseline of the first rates
    time.sleep(interval)
    if once:
        view = snapshot(settings, urls, rates, drifts, interval, drift_seconds)
        if as_json:
            print_json(view)
        else:
            _print(view)
        return
    try:
        if console().is_terminal:
            with Live(console=console(), auto_refresh=False, screen=False) as live:
                while True:
                    view = snapshot(settings, urls, rates, drifts, interval, drift_seconds)
                    live.update(render(view.rows, _caption(view)), refresh=True)
                    time.sleep(interval)
        else:  # piped: one plain block per refresh
            while True:
                _print(snapshot(settings, urls, rates, drifts, interval, drift_seconds))
                time.sleep(interval)
    except KeyboardInterrupt:  # Ctrl-C is how one leaves top: a normal exit
        return
