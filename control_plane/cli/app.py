"""The Typer application and the single place where errors become exit codes."""

from __future__ import annotations

import typer
from rich.console import Console

from tritonops import __version__
from tritonops.errors import TritonOpsError

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
) -> None:
    """tritonops: sklearn / PyTorch classifiers on NVIDIA Triton, in production."""


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, turning our errors into one line and an exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except TritonOpsError as exc:
        error_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        error_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        error_console.print("interrupted")
        return 130
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        from click.exceptions import ClickException

        if isinstance(exc, ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0
