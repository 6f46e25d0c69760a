"""``tritonops top``: the dashboard's numbers in a terminal, for users without Grafana.

Every refresh scrapes each Triton ``/metrics`` once (``tritonops.control_plane.metrics.fleet_window``) and shows,
per model and version served: request rate, error rate (Triton failures + requests the backend rejected), p50/p99,
mean queue and compute time, batch size, cache hit rate, its role in the control plane's desired state (live / canary)
and the drift verdict of live versions over ``--drift-window``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import typer
from rich.live import Live
from rich.table import Table

from tritonops.contract.names import canary_alias
from tritonops.control_plane.cli.app import app, console
from tritonops.control_plane.cli.drift import METRICS_URL_HELP, resolve_metrics_urls
from tritonops.control_plane.desired import version_manifest
from tritonops.control_plane.drift import DriftConfig, DriftReport, parse_duration
from tritonops.control_plane.errors import ControlPlaneError
from tritonops.control_plane.guardrails import drift_for_version
from tritonops.control_plane.metrics import (
    FRONTEND_GAP,
    FleetWindow,
    MemoryHistory,
    VersionStats,
    fleet_window,
    window,
)
from tritonops.control_plane.state import ModelState, StateStore
from tritonops.settings import Settings, load_settings

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


@dataclass(frozen=True)
class TopRow:
    """One line of ``top``: one model version as Triton serves it (the canary under its alias)."""

    model: str
    version: str
    role: str
    stats: VersionStats
    drift: str


def role_of(model: str, version: str, states: Mapping[str, ModelState]) -> str:
    """``live`` / ``canary`` per the desired state, ``-`` for what the control plane doesn't manage."""
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
) -> list[TopRow]:
    """Rows sorted by model and version; drift is keyed by (model, version) like ``stats``."""
    return [
        TopRow(model, version, role_of(model, version, states), s, drift_verdict(drift.get((model, version))))
        for (model, version), s in sorted(stats.items(), key=lambda item: (item[0][0], int(item[0][1])))
    ]


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def render(rows: Sequence[TopRow], caption: str) -> Table:
    table = Table(*COLUMNS, caption=caption, caption_justify="left")
    for row in rows:
        s = row.stats
        table.add_row(
            row.model,
            row.version,
            row.role,
            _fmt(s.request_rate, "{:,.1f}"),
            _fmt(s.error_rate, "{:.2%}"),
            _fmt(s.latency_ms.get(0.5), "{:.2f}"),
            _fmt(s.latency_ms.get(0.99), "{:.2f}"),
            _fmt(s.mean_queue_ms, "{:.3f}"),
            _fmt(s.mean_compute_ms, "{:.3f}"),
            _fmt(s.avg_batch_size, "{:.1f}"),
            _fmt(s.cache_hit_rate, "{:.0%}"),
            row.drift,
        )
    return table


def _states(settings: Settings) -> dict[str, ModelState]:
    if settings.state_url is None and not settings.state_path.exists():  # no control plane: roles unknown
        return {}
    with StateStore.open(settings.state) as store:
        return {state.name: state for state in store.models()}


def _drift(
    settings: Settings, states: Mapping[str, ModelState], now: FleetWindow, history: MemoryHistory, seconds: float
) -> dict[tuple[str, str], DriftReport]:
    """Drift of every live version over the last ``seconds`` (or as much history as there is)."""
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


def snapshot_table(
    settings: Settings,
    urls: Sequence[str],
    rates: MemoryHistory,
    drifts: MemoryHistory,
    interval: float,
    drift_seconds: float,
) -> Table:
    """Scrape once, compare with the previous scrape (rates) and with ``drift_seconds`` ago (drift)."""
    fleet = fleet_window(urls, interval, rates)
    states = _states(settings)
    drift = _drift(settings, states, fleet, drifts, drift_seconds)
    for url, win in fleet.windows.items():
        drifts.record(url, win.latest)
    span = f"{fleet.seconds:.1f} s" if fleet.seconds else "since load"
    failed = "".join(f"\n[red]{url}: {why}[/]" for url, why in fleet.failures.items())
    caption = (
        f"{len(fleet.windows)}/{len(urls)} endpoints, window {span}, drift over {drift_seconds:.0f} s; "
        f"errors: {FRONTEND_GAP}{failed}"
    )
    return render(build_rows(fleet.stats, states, drift), caption)


@app.command("top")
def top(
    metrics_url: list[str] = typer.Option([], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help=METRICS_URL_HELP),
    interval: float = typer.Option(2.0, "--interval", "-n", min=0.2, help="Seconds between refreshes."),
    drift_window: str = typer.Option("5m", "--drift-window", help="Window of the drift verdict (30s, 5m, 1h)."),
    once: bool = typer.Option(False, "--once", help="Scrape twice, INTERVAL apart, print one table and exit."),
) -> None:
    """Live table per model and version: req/s, errors, p50/p99, queue vs compute, batch size, cache, drift."""
    settings = load_settings()
    urls = resolve_metrics_urls(metrics_url)
    drift_seconds = parse_duration(drift_window)
    rates = MemoryHistory(keep_seconds=interval * 3)
    drifts = MemoryHistory(keep_seconds=drift_seconds * 2)
    fleet_window(urls, interval, rates)  # the first scrape is the baseline of the first rates
    time.sleep(interval)
    if once:
        console.print(snapshot_table(settings, urls, rates, drifts, interval, drift_seconds))
        return
    try:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                live.update(snapshot_table(settings, urls, rates, drifts, interval, drift_seconds), refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:  # Ctrl-C is how one leaves top: a normal exit
        return
