"""``tritonops drift NAME``: per-feature data drift of the live version over a window, as a table or JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import Cell, console, error_console, print_json, print_table, styled
from tritonops.control_plane.cli.remote import controller
from tritonops.settings import Settings

if TYPE_CHECKING:
    from tritonops.control_plane.drift import DriftReport
    from tritonops.control_plane.metrics import History
    from tritonops.control_plane.views import DriftView, FeatureDriftView

_BARS = " ▁▂▃▄▅▆▇█"
_P_VALUE_METHODS = ("ks", "chisquare")
PREDICTION_ROW = "__prediction__"
"""The pseudo-feature name of the class mix (``tritonops.control_plane.drift.PREDICTION``)."""

METRICS_URL_HELP = (
    "Triton /metrics URL to scrape (repeatable; also $TRITONOPS_METRICS_URLS, space separated). "
    "Default: each fleet endpoint's gRPC port + 1, e.g. 10.0.0.5:8001 -> http://10.0.0.5:8002/metrics."
)


def parse_duration(text: str, option: str = "--window") -> float:
    """``tritonops.control_plane.drift.parse_duration`` as a usage error (exit 2) naming ``option``."""
    from tritonops.control_plane.drift import parse_duration as parse
    from tritonops.errors import ConfigurationError

    try:
        return parse(text, option)
    except ConfigurationError as exc:
        raise typer.BadParameter(exc.message) from exc


def resolve_metrics_urls(settings: Settings, explicit: list[str]) -> list[str]:
    """``--metrics-url`` values, else the fleet's endpoints from the state file (which must exist)."""
    from tritonops.control_plane.discovery import discover
    from tritonops.control_plane.errors import NoStateError
    from tritonops.control_plane.metrics import metrics_urls
    from tritonops.control_plane.state import StateStore
    from tritonops.errors import ConfigurationError

    fleet: list[str] = []
    if not explicit:
        try:
            with StateStore.open(settings.state, create=False) as store:
                fleet = discover(settings.fleet, store)
        except NoStateError as exc:
            exc.add_note("or name the endpoints to scrape with --metrics-url")
            raise
        if not fleet:
            raise ConfigurationError(
                "--metrics-url: none given and the fleet is empty; pass --metrics-url or add endpoints with "
                "`tritonops fleet add HOST:PORT`"
            )
    return metrics_urls(explicit, fleet)


@contextlib.contextmanager
def snapshot_history(settings: Settings, keep_seconds: float = 86400.0) -> Iterator[History]:
    """Scrapes kept in the state database when there is one; in memory otherwise (a read creates no state file)."""
    from tritonops.control_plane.metrics import MemoryHistory, SnapshotStore

    if settings.state_url is None and not settings.state_path.is_file():
        yield MemoryHistory(keep_seconds)
        return
    with SnapshotStore(settings.state, keep_seconds=keep_seconds) as store:
        yield store


def sparkline(shares: list[float] | tuple[float, ...]) -> str:
    """One character per bin, the tallest bin full height."""
    top = max(shares) if shares else 0.0
    if top <= 0:
        return " " * len(shares)
    return "".join(_BARS[round(s / top * (len(_BARS) - 1))] for s in shares)


def _number(value: float | str | None, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    return "-" if value is None else f"{value:.{digits}g}"


def _verdict(f: FeatureDriftView) -> Cell:
    if not f.enough_data:
        return styled("too few rows", "dim")
    return styled("DRIFT", "bold red") if f.drifted else styled("ok", "green")


def _shares(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [c / total for c in counts] if total else [0.0 for _ in counts]


def render(report: DriftView) -> None:
    window = (
        f"last {report.window_seconds:.0f} s" if report.window_seconds is not None else "since the version was loaded"
    )
    console().print(
        styled(report.model, "bold"), f" version {report.version}: {report.rows:.0f} rows scored, {window}", sep=""
    )
    for note in report.notes:
        console().print("  ", styled("note:", "yellow"), " ", note, sep="", markup=False)
    columns = ["feature", "kind", "rows", "method", "score", "threshold", "verdict", "PSI", "JS", "KS", "chi² p"]
    rows = []
    for f in [*report.features, *([report.prediction] if report.prediction else [])]:
        rows.append(
            [
                "(class mix)" if f.name == PREDICTION_ROW else f.name,
                f.kind,
                f"{f.live_rows:.0f}",
                f.method,
                _number(f.score),
                f"{'<' if f.method in _P_VALUE_METHODS else '>='} {f.threshold:g}",
                _verdict(f),
                f"{_number(f.psi)} {f.psi_band or ''}".strip(),
                _number(f.jensenshannon),
                _number(f.ks.statistic if f.ks else None),
                _number(f.chisquare.p_value if f.chisquare else None),
                sparkline(f.reference),
                sparkline(_shares(f.live)),
            ]
        )
    print_table([*columns, "reference", "live"], rows)
    if not report.enough_data:
        console().print(
            styled("not enough data:", "yellow"),
            f"{report.rows:.0f} rows in the window, at least {report.min_rows} needed for a verdict; no drift is "
            "reported",
        )
        return
    share = f"{len(report.drifted_features)}/{len(report.features)} features drifted"
    if report.dataset_drift:
        console().print(
            styled("dataset drift", "bold red"), f": {share} (threshold share {report.drift_share:g})", sep=""
        )
    else:
        console().print(
            styled("no dataset drift", "green"), f": {share} (threshold share {report.drift_share:g})", sep=""
        )
    if report.prediction_drift:
        console().print(styled("prediction drift", "bold red"), ": the class mix moved away from the reference", sep="")


@app.command("drift")
def drift(
    model: str = typer.Argument(..., help="Model name."),
    window: str = typer.Option(
        "15m", "--window", "-w", help="Look back this far (30s, 15m, 2h) using recorded snapshots; 'load' = since load."
    ),
    version: int | None = typer.Option(None, "--version", help="Version to check (default: the live one)."),
    metrics_url: list[str] = typer.Option([], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help=METRICS_URL_HELP),
    policy: Path | None = typer.Option(
        None, "--policy", "-p", help="Guardrail policy file (YAML/TOML) whose drift thresholds to use."
    ),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
    html_report: Path | None = typer.Option(
        None,
        "--report",
        help="Also write the report as one self-contained HTML page (histograms per feature, the most drifted "
        "captured rows) here; in remote mode the controller renders it.",
    ),
) -> None:
    """Data drift of each input feature and of the class mix against the manifest's reference.

    Snapshots of the counters are kept in the state file (when there is one); with none old enough the window
    starts at the oldest one, and with none at all the counters count since the version was loaded. Each run
    records a snapshot too.
    """
    from tritonops.control_plane.views import DriftView, from_drift

    report: DriftReport | None = None
    if api := controller():
        if policy is not None or metrics_url:
            from tritonops.errors import ConfigurationError

            raise ConfigurationError(
                "--policy / --metrics-url: not taken in remote mode; the controller uses the model's stored policy "
                "and scrapes the fleet it knows"
            )
        if window != "load":
            parse_duration(window)  # the same usage error as locally, before asking the controller
        view = DriftView.model_validate(api.drift(model, window, version))
    else:
        report = _measure(options.settings(repository, state), model, window, version, metrics_url, policy)
        view = from_drift(report)
    if as_json:
        print_json(view)
    else:
        render(view)
    if html_report is not None:
        from tritonops.control_plane.drift_html import write_html, write_page
        from tritonops.control_plane.drift_rows import captured_drifted_rows
        from tritonops.control_plane.state import now_iso

        if api:  # the controller's page: its captured rows live with it
            written = write_page(api.drift_report(model, window, version), html_report)
        else:
            assert report is not None
            rows = captured_drifted_rows(options.settings(repository, state), report)
            written = write_html(report, html_report, generated_at=now_iso(), drifted_rows=rows)
        to = error_console() if as_json else console()  # with --json, stdout holds only the JSON
        to.print(f"drift report written to {written}", markup=False, highlight=False)


def _measure(
    settings: Settings, model: str, window: str, version: int | None, metrics_url: list[str], policy: Path | None
) -> DriftReport:
    from tritonops.control_plane.drift import DriftConfig
    from tritonops.control_plane.guardrails import load_policy, measure_drift

    seconds = None if window == "load" else parse_duration(window)
    config = DriftConfig()
    if policy is not None:
        loaded = load_policy(policy)
        config = loaded.drift.thresholds if loaded.drift is not None else config
    urls = resolve_metrics_urls(settings, metrics_url)
    with snapshot_history(settings) as history:
        return measure_drift(
            settings, model, urls, version=version, window_seconds=seconds, config=config, history=history
        )
