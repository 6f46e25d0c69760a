"""``tritonops capture set|off|export|compact``: keep a share of the live version's scored rows, hand them out."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import console, print_json, styled
from tritonops.settings import Settings

capture_app = typer.Typer(
    help="Captured rows: a share of scored requests kept as Parquet, with ground truth joined by request id.",
    no_args_is_help=True,
)
app.add_typer(capture_app, name="capture")


def _seconds(text: str) -> float:
    from tritonops.control_plane.cli.drift import parse_duration

    return parse_duration(text, "--since")


def _set(
    settings: Settings,
    model: str,
    share: float,
    drop: list[str],
    hashed: list[str],
    actor: str | None,
    reason: str,
    as_json: bool,
) -> None:
    from tritonops.control_plane.rollout import resolve_actor, set_capture
    from tritonops.control_plane.views import from_rollout

    result = set_capture(settings, model, share, drop=drop, hashed=hashed, actor=resolve_actor(actor), reason=reason)
    view = from_rollout(result)
    if as_json:
        print_json(view)
    else:
        line = f" capture {model}: {view.detail} ({view.seconds:.1f} s)"
        console().print(styled("ok", "green"), line, sep="", markup=False)


@capture_app.command("set")
def set_(
    model: str = typer.Argument(..., help="Model name."),
    share: float = typer.Option(..., "--share", min=0.0, max=1.0, help="Share of scored requests to keep (0 stops)."),
    drop: list[str] = typer.Option([], "--drop", help="A feature never written (repeatable)."),
    hashed: list[str] = typer.Option([], "--hash", help="A feature written as its SHA-256 (repeatable)."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """Capture SHARE of MODEL's live requests on every endpoint (the live model reloads; no request fails)."""
    _set(options.settings(repository, state), model, share, drop, hashed, actor, reason, as_json)


@capture_app.command("off")
def off(
    model: str = typer.Argument(..., help="Model name."),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
    actor: str | None = options.ACTOR,
    reason: str = options.REASON,
    as_json: bool = options.JSON,
) -> None:
    """Stop capturing MODEL's rows (what was captured stays)."""
    _set(options.settings(repository, state), model, 0.0, [], [], actor, reason, as_json)


@capture_app.command("compact")
def compact(as_json: bool = options.JSON) -> None:
    """Move closed spool files into Parquet and enforce TRITONOPS_CAPTURE_MAX_BYTES (the controller does it too)."""
    from tritonops.control_plane.capture import compact as compact_rows
    from tritonops.control_plane.views import from_compaction

    settings = options.settings()
    report = compact_rows(
        settings.capture_dir / "spool", settings.capture_dir / "rows", max_bytes=settings.capture_max_bytes
    )
    view = from_compaction(report)
    if as_json:
        print_json(view)
    else:
        console().print(
            f"compacted {view.files} spool file(s), {view.rows} row(s), into {view.parquet_files} Parquet "
            f"file(s); {view.deleted_for_size} deleted for the size bound; {view.bytes_after} bytes kept",
            markup=False,
        )


@capture_app.command("export")
def export(
    model: str = typer.Argument(..., help="Model name."),
    since: str = typer.Option("1h", "--since", help="How far back: 30m, 2h, 7d ('all' for everything)."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet file to write."),
    state: str | None = options.STATE,
    as_json: bool = options.JSON,
) -> None:
    """MODEL's captured rows since a time, with ``true_label`` from recorded feedback, as one Parquet file.

    The true labels come from the state's feedback; without a state file the rows are exported unlabelled (none
    is created).
    """
    from tritonops.control_plane.capture import compact as compact_rows
    from tritonops.control_plane.capture import export as export_rows
    from tritonops.control_plane.capture import write_parquet
    from tritonops.control_plane.feedback import FeedbackStore
    from tritonops.control_plane.views import CaptureExportView

    settings = options.settings(state=state)
    start = None if since == "all" else time.time() - _seconds(since)
    compact_rows(settings.capture_dir / "spool", settings.capture_dir / "rows", max_bytes=settings.capture_max_bytes)
    rows = settings.capture_dir / "rows"
    if settings.state_url is None and not settings.state_path.is_file():
        table = export_rows(rows, model, since=start)
    else:
        with FeedbackStore(settings.state) as feedback:
            table = export_rows(rows, model, since=start, labels=feedback.true_labels)
    write_parquet(table, output)
    view = CaptureExportView(
        model=model, rows=table.num_rows, labelled=table.num_rows - table["true_label"].null_count, output=str(output)
    )
    if as_json:
        print_json(view)
    else:
        console().print(
            f"wrote {view.rows} row(s) of {model} ({view.labelled} with a true label) to {output}", markup=False
        )
