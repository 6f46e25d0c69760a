"""The Typer application and the single place where errors become exit codes."""

from __future__ import annotations

import typer
from rich.console import Console

from tritonops import __version__
from tritonops.errors import TritonOpsError
from tritonops.extras import missing_extra

app = typer.Typer(
    name="tritonops",
    help="Convert classifiers to ONNX, serve them on Triton, and run them safely: "
    "deploy, promote, canary, rollback, drift and guardrails.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

console = Console()
error_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"tritonops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        help="The controller's API (default: $TRITONOPS_URL): rollout, status, history, drift, policy, fleet, "
        "feedback and token commands then go through it with the token in $TRITONOPS_TOKEN or "
        "$TRITONOPS_TOKEN_FILE. Without one they work on the local state.",
        show_default=False,
    ),
) -> None:
    """tritonops: sklearn / PyTorch classifiers on NVIDIA Triton, in production."""
    from tritonops.control_plane.cli.remote import set_url

    set_url(url)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, turning our errors into one line and an exit code.

    Typer (standalone mode) handles usage errors, ``typer.Exit`` and Ctrl-C itself and ends with ``SystemExit``;
    everything of ours derives from ``TritonOpsError`` and becomes one red line plus its ``exit_code``.
    """
    try:
        app(args=argv)
    except TritonOpsError as exc:
        error_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except ModuleNotFoundError as exc:  # a command of a part that is not installed: name its extra
        missing = missing_extra(exc)
        if missing is None:
            raise
        error_console.print(f"[bold red]error:[/] {missing}", highlight=False, soft_wrap=True)
        return missing.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
