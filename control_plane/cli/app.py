"""The Typer application and the single place where errors become exit codes.

Nothing heavy is imported here or at the top of any command module: ``tritonops --help`` must stay instant, so
each command imports the library it calls inside its body.
"""

from __future__ import annotations

import sys
from typing import Literal

import typer

from tritonops import __version__
from tritonops.control_plane.cli.output import console, error_console
from tritonops.errors import ExitCode, TritonOpsError


def exit_code_epilog() -> str:
    """The exit-code table for ``tritonops --help`` (the same table as docs/operations.md).

    ``\\b`` keeps click from re-flowing the rows into one paragraph when help is plain text.
    """
    rows = "\n".join(f"{code.value:>3}  {code.name.lower()}: {code.meaning}" for code in ExitCode)
    return f"\b\nExit codes (docs/operations.md):\n{rows}"


HELP_MARKUP: Literal["rich"] | None = "rich" if sys.stdout.isatty() else None
"""Help is drawn by rich (panels, colour) on a terminal; piped (``| less``, scripts) it is click's plain text,
which also skips importing rich's Markdown stack."""

app = typer.Typer(
    name="tritonops",
    help="Convert classifiers to ONNX, serve them on Triton, and run them safely: "
    "deploy, promote, canary, rollback, drift and guardrails.",
    epilog=exit_code_epilog(),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)


def _version(value: bool) -> None:
    if value:
        console().print(f"tritonops {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version of tritonops and exit."
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        help="The controller's API (default: $TRITONOPS_URL): rollout, status, history, drift, policy, fleet, "
        "feedback, token and shadow commands then go through it with the token in $TRITONOPS_TOKEN or "
        "$TRITONOPS_TOKEN_FILE. Without one they work on the local state.",
        show_default=False,
    ),
) -> None:
    """tritonops: sklearn / PyTorch classifiers on NVIDIA Triton, in production."""
    from tritonops.control_plane.cli.remote import set_url

    set_url(url)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, turning our errors into one line and an exit code.

    Typer (standalone mode) handles usage errors (exit 2), ``typer.Exit`` and Ctrl-C (130) itself and ends with
    ``SystemExit``; everything of ours derives from ``TritonOpsError`` and becomes one red line (message, then the
    notes added on the way up) plus its family's ``exit_code`` (``tritonops.errors.ExitCode``).
    """
    try:
        app(args=argv)
    except TritonOpsError as exc:
        from rich.text import Text

        error_console().print(Text.assemble(("error:", "bold red"), " ", exc.describe()), soft_wrap=True)
        return int(exc.exit_code)
    except ModuleNotFoundError as exc:  # a command of a part that is not installed: name its extra
        from rich.text import Text

        from tritonops.extras import missing_extra

        missing = missing_extra(exc)
        if missing is None:
            raise
        error_console().print(Text.assemble(("error:", "bold red"), " ", missing.describe()), soft_wrap=True)
        return int(missing.exit_code)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
