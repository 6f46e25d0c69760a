"""``tritonops capture set|off|export|compact``: keep a share of the live version's scored rows, hand them out."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import typer

from tritonops.control_plane.cli.app import app, console
from tritonops.settings import load_settings

capture_app = typer.Typer(
    help="Captured rows: a share of scored requests kept as Parquet, with ground truth joined by request id.",
    no_args_is_help=True,
)
app.add_typer(capture_app, name="capture")


def _seconds(text: str) -> float:
    from tritonops.control_plane.drift import parse_duration

    return parse_duration(text, "--since")


@capture_app.command("set")
def set_(
    model: str = typer.Argument(..., help="Model name."),
    share: float = typer.Option(..., "--share", min=0.0, max=1.0, help="Share of scored requests to keep (0 stops)."),
    drop: list[str] = typer.Option([], "--drop", help="A feature never written (repeatable)."),
    hashed: list[str] = typer.Option([], "--hash", help="A feature written as its SHA-256 (repeatable)."),
    reason: str = typer.Option("", "--reason", help="Why, for the audit log."),
    actor: str | None = typer.Option(None, "--actor", help="Who (default: $TRITONOPS_ACTOR, then $USER)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Capture SHARE of MODEL's live requests on every endpoint (the live model reloads; no request fails)."""
    from tritonops.control_plane.rollout import resolve_actor, set_capture

    result = set_capture(
        load_settings(), model, share, drop=drop, hashed=hashed, actor=resolve_actor(actor), reason=reason
    )
    if as_json:
        typer.echo(json.dumps(asdict(result), default=str, indent=2))
    else:
        console.print(f"[green]ok[/] capture {model}: {result.detail} ({result.seconds:.1f} s)")


@capture_app.command("off")
def off(
    model: str = typer.Argument(..., help="Model name."),
    reason: str = typer.Option("", "--reason", help="Why, for the audit log."),
    actor: str | None = typer.Option(None, "--actor", help="Who (default: $TRITONOPS_ACTOR, then $USER)."),
) -> None:
    """Stop capturing MODEL's rows (what was captured stays)."""
    from tritonops.control_plane.rollout import resolve_actor, set_capture

    result = set_capture(load_settings(), model, 0.0, actor=resolve_actor(actor), reason=reason)
    console.print(f"[green]ok[/] capture {model}: {result.detail}")


@capture_app.command("compact")
def compact(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Move closed spool files into Parquet and enforce TRITONOPS_CAPTURE_MAX_BYTES (the controller does it too)."""
    from tritonops.control_plane.capture import compact as compact_rows

    settings = load_settings()
    report = compact_rows(
        settings.capture_dir / "spool", settings.capture_dir / "rows", max_bytes=settings.capture_max_bytes
    )
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2))
    else:
        console.print(
            f"compacted {report.files} spool file(s), {report.rows} row(s), into {report.parquet_files} Parquet "
            f"file(s); {report.deleted_for_size} deleted for the size bound; {report.bytes_after} bytes kept"
        )


@capture_app.command("export")
def export(
    model: str = typer.Argument(..., help="Model name."),
    since: str = typer.Option("1h", "--since", help="How far back: 30m, 2h, 7d ('all' for everything)."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet file to write."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON."),
) -> None:
    """MODEL's captured rows since a time, with ``true_label`` from recorded feedback, as one Parquet file."""
    from tritonops.control_plane.capture import compact as compact_rows
    from tritonops.control_plane.capture import export as export_rows
    from tritonops.control_plane.capture import write_parquet
    from tritonops.control_plane.feedback import FeedbackStore

    settings = load_settings()
    start = None if since == "all" else time.time() - _seconds(since)
    compact_rows(settings.capture_dir / "spool", settings.capture_dir / "rows", max_bytes=settings.capture_max_bytes)
    with FeedbackStore(settings.state) as feedback:
        table = export_rows(settings.capture_dir / "rows", model, since=start, labels=feedback.true_labels)
    write_parquet(table, output)
    labelled = table.num_rows - table["true_label"].null_count
    summary = {"model": model, "rows": table.num_rows, "labelled": labelled, "output": str(output)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        console.print(f"wrote {table.num_rows} row(s) of {model} ({labelled} with a true label) to {output}")
