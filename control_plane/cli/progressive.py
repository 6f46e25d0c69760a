"""``tritonops rollout MODEL VERSION --steps ... --interval ...`` and ``rollout status|pause|resume|abort MODEL``.

A progressive rollout runs in the controller (it steps the weight, analyses each step and promotes or rolls back
after the command has exited), so these commands need remote mode: ``TRITONOPS_URL`` (or ``--url``) and a token in
``TRITONOPS_TOKEN`` / ``TRITONOPS_TOKEN_FILE``. Thin: parse, call ``ControllerClient``, render a table or ``--json``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.output import Cell, console, print_json, print_table, styled
from tritonops.control_plane.cli.remote import controller

if TYPE_CHECKING:
    from tritonops.control_plane.progressive_runs import Rollout
    from tritonops.control_plane.remote import ControllerClient

_VERBS = ("start", "status", "pause", "resume", "abort")


class _StartByDefault(TyperGroup):
    """``rollout MODEL VERSION ...`` is ``rollout start MODEL VERSION ...`` (a model named like a verb needs
    ``rollout start``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's vendored click Context
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["start", *args]
        return super().parse_args(ctx, args)


rollout_app = typer.Typer(
    cls=_StartByDefault,
    help="Progressive rollouts, run by the controller: `tritonops rollout MODEL VERSION --steps 5,25,50,100 "
    "--interval 60s [--analysis FILE]`, then `rollout status|pause|resume|abort MODEL` (remote mode only).",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")

JSON = typer.Option(False, "--json", help="Print the rollout as one JSON object (schema: docs/cli.md).")
REASON = typer.Option("", "--reason", help="Why, for the audit log.")


def _controller() -> ControllerClient:
    api = controller()
    if api is None:
        from tritonops.errors import ConfigurationError

        raise ConfigurationError(
            "tritonops rollout: a progressive rollout runs in the controller (it goes on after this command "
            "exits); set TRITONOPS_URL (or --url) to the controller and TRITONOPS_TOKEN or TRITONOPS_TOKEN_FILE "
            "to an operator's token"
        )
    return api


def _render(rollout: Rollout, as_json: bool) -> None:
    from tritonops.control_plane.views import from_progressive

    view = from_progressive(rollout)
    if as_json:
        print_json(view)
        return
    colors = {"running": "bold green", "paused": "yellow", "succeeded": "bold green", "rolled-back": "red"}
    steps = ", ".join(f"{s:g}%" for s in view.steps)
    console().print(
        styled(view.status, colors.get(view.status, "red")),
        f"rollout {view.id} of {view.model} v{view.version} (live was {view.from_version}): step "
        f"{view.step}/{len(view.steps)} at {view.weight:g} of [{steps}] every {view.interval_seconds:g} s, "
        f"{view.failed_checks} of {view.threshold} failed checks",
        markup=False,
    )
    if view.outcome:
        console().print(f"  {view.outcome}", markup=False)
    rows: list[list[Cell]] = [
        [
            datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.event,
            "-" if e.step is None else str(e.step),
            "-" if e.weight is None else f"{e.weight:g}",
            e.verdict or "-",
            e.decision or "-",
            "-" if e.canary_requests is None else f"{e.canary_requests:.0f}",
            "-" if e.canary_errors is None else f"{e.canary_errors:.0f}",
            ", ".join(e.failed) or "-",
        ]
        for e in view.steps_log
    ]
    columns = ["time (UTC)", "event", "step", "weight", "verdict", "decision", "canary req", "errors", "failed"]
    print_table(columns, rows)


@rollout_app.command("start")
def start(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to roll out (it becomes the canary, then live)."),
    steps: str = typer.Option(..., "--steps", help="Canary weights in percent, increasing, in (0, 100]: 5,25,50,100."),
    interval: str = typer.Option(
        "60s", "--interval", "-i", help="How long each step runs before its analysis: 60s, 2m, 1h, or seconds."
    ),
    analysis: Path | None = typer.Option(
        None, "--analysis", help="Analysis file (YAML): threshold, min_requests, no_data, checks (docs/operations.md)."
    ),
    reason: str = REASON,
    as_json: bool = JSON,
) -> None:
    """Start a progressive rollout of VERSION: the first step is applied (gates included) before this returns;
    the controller steps on, analyses each step's window and promotes or rolls back by itself."""
    from tritonops.control_plane.progressive import load_analysis, parse_interval, parse_steps

    parsed_steps = list(parse_steps(steps))  # bad input is refused here, before the controller is asked
    seconds = parse_interval(interval)
    body = load_analysis(analysis).model_dump(mode="json", exclude_unset=True) if analysis is not None else None
    _render(_controller().rollout_start(model, version, parsed_steps, seconds, body, reason=reason), as_json)


@rollout_app.command("status")
def status(model: str = typer.Argument(..., help="Model name."), as_json: bool = JSON) -> None:
    """MODEL's unfinished rollout, else its latest: status, step, failed checks, every step's analysis."""
    _render(_controller().rollout_status(model), as_json)


def _control(verb: str, model: str, reason: str, as_json: bool) -> None:
    _render(_controller().rollout_control(model, verb, reason=reason), as_json)


@rollout_app.command("pause")
def pause(model: str = typer.Argument(..., help="Model name."), reason: str = REASON, as_json: bool = JSON) -> None:
    """Stop stepping MODEL's rollout; the canary keeps its weight."""
    _control("pause", model, reason, as_json)


@rollout_app.command("resume")
def resume(model: str = typer.Argument(..., help="Model name."), reason: str = REASON, as_json: bool = JSON) -> None:
    """Go on with MODEL's paused rollout: its current step starts again with a fresh window."""
    _control("resume", model, reason, as_json)


@rollout_app.command("abort")
def abort(model: str = typer.Argument(..., help="Model name."), reason: str = REASON, as_json: bool = JSON) -> None:
    """End MODEL's rollout: the canary is removed, live is untouched."""
    _control("abort", model, reason, as_json)
