"""``tritonops watch NAME``: run the guardrail policy in a loop; roll back or abort the canary on a breach."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from tritonops.control_plane.cli import options
from tritonops.control_plane.cli.app import app
from tritonops.control_plane.cli.drift import METRICS_URL_HELP, resolve_metrics_urls
from tritonops.control_plane.cli.output import console, error_console
from tritonops.errors import ExitCode

if TYPE_CHECKING:
    from tritonops.control_plane.guardrails import Step

EXIT_ACTED = int(ExitCode.GUARDRAIL_ACTED)
"""Exit status of ``watch --exit-on-action`` after an automatic rollback or canary abort."""


def _describe(step: Step) -> str:
    state = step.state
    parts = [time.strftime("%H:%M:%S", time.localtime(step.at)), f"live v{state.live}"]
    if state.canary is not None:
        parts.append(f"canary v{state.canary} @ {state.canary_weight:g}")
    for check in step.checks:
        if check.value is None:
            continue
        streak = step.streaks.get(f"{check.target}:{check.guardrail}", 0)
        mark = "[red]" if check.breached else ("[dim]" if not check.enough_data else "")
        end = "[/]" if mark else ""
        parts.append(
            f"{mark}{check.target}.{check.guardrail} {check.value:.4g}/{check.limit:g}"
            f"{f' x{streak}' if streak else ''}{end}"
        )
    return "  ".join(parts)


def _render(step: Step) -> None:
    from rich.markup import escape  # messages from servers and errors are text, never markup

    console().print(_describe(step), highlight=False)
    for url, why in step.scrape_failures.items():
        error_console().print(f"  [yellow]scrape failed[/] {escape(url)}: {escape(why)}", highlight=False)
    for check in step.alerts:
        console().print(
            f"  [bold yellow]alert[/]: {check.target} v{check.version} {check.guardrail} breached "
            f"{step.streaks.get(f'{check.target}:{check.guardrail}', 0)} steps in a row (recorded, no action)",
            highlight=False,
        )
    if step.action is not None:
        if step.action_error is None:
            console().print(f"  [bold red]{step.action}[/]: {escape(step.action_detail)}", highlight=False)
        else:
            error_console().print(f"  [bold red]{step.action} failed[/]: {escape(step.action_error)}", highlight=False)


def _interruptible(stop: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


@app.command("watch")
def watch(
    model: str = typer.Argument(..., help="Model name."),
    policy_file: Path | None = typer.Option(
        None, "--policy", "-p", help="Guardrail policy, YAML or TOML (default: built-in defaults)."
    ),
    metrics_url: list[str] = typer.Option([], "--metrics-url", envvar="TRITONOPS_METRICS_URLS", help=METRICS_URL_HELP),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Stop after this many steps."),
    once: bool = typer.Option(False, "--once", help="One step, then exit (same as --iterations 1)."),
    interval: float | None = typer.Option(
        None, "--interval", "-i", min=0.1, help="Seconds between steps (overrides the policy)."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve the control plane's own Prometheus metrics on this port (0 = any free one)."
    ),
    metrics_address: str = typer.Option("127.0.0.1", "--metrics-address", help="Address for --metrics-port."),
    exit_on_action: bool = typer.Option(
        False, "--exit-on-action", help=f"Stop after an automatic action and exit with status {EXIT_ACTED}."
    ),
    actor: str | None = typer.Option(
        None, "--actor", help="Who acts, for the audit log [default: tritonops-watch@$TRITONOPS_ACTOR or $USER]."
    ),
    repository: Path | None = options.REPOSITORY,
    state: str | None = options.STATE,
) -> None:
    """Check error rate, p99 latency, drift and canary-vs-live every interval; act after repeated breaches.

    A breaching canary is aborted, a breaching live version rolled back (policy `action`), each with an audit
    event holding the evidence. An endpoint that can't be scraped is reported and the others still count.
    """
    from tritonops.control_plane.errors import ControlPlaneError, GuardrailActedError
    from tritonops.control_plane.exporter import ControlPlaneExporter
    from tritonops.control_plane.guardrails import Policy, Watcher, load_policy
    from tritonops.control_plane.metrics import FRONTEND_GAP, SnapshotStore
    from tritonops.control_plane.rollout import resolve_actor

    settings = options.settings(repository, state)
    policy = load_policy(policy_file) if policy_file is not None else Policy()
    if interval is not None:
        policy = policy.model_copy(update={"interval_seconds": interval})
    urls = resolve_metrics_urls(settings, metrics_url)
    exporter = ControlPlaneExporter() if metrics_port is not None else None
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with SnapshotStore(settings.state) as history:
        watcher = Watcher(
            settings,
            model,
            policy,
            urls,
            actor=actor or f"tritonops-watch@{resolve_actor()}",
            exporter=exporter,
            history=history,
            sleep=_interruptible(stop),
        )
        if exporter is not None and metrics_port is not None:
            port = exporter.serve(metrics_port, metrics_address)
            console().print(f"control plane metrics on http://{metrics_address}:{port}/metrics")
        console().print(
            f"watching {model} on {len(urls)} endpoint(s): every {policy.interval_seconds:g} s, window "
            f"{policy.window_seconds:g} s, {policy.consecutive} breaches in a row to act ({policy.action.value}); "
            f"error rate = Triton failures + backend refusals ({FRONTEND_GAP})"
        )
        try:
            summary = watcher.run(
                1 if once else iterations,
                stop_after_action=exit_on_action,
                on_step=_render,
                should_stop=stop.is_set,
            )
        finally:
            if exporter is not None:
                exporter.stop()
    last = summary.last
    if exit_on_action and last is not None and last.action is not None:
        if last.action_error is not None:
            raise ControlPlaneError(f"watch {model!r}: the automatic {last.action} failed: {last.action_error}")
        raise GuardrailActedError(model, last.action or "", last.action_detail)
