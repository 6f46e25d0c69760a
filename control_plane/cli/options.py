"""Options shared by many commands, each with one name, one short flag at most and one meaning.

Short flags in the whole CLI (pinned by tests/unit/test_cli.py): ``-r`` ``--repository``, ``-n`` ``--name``,
``-s`` ``--sample``, ``-m`` ``--load-model``, ``-d`` ``--detach``, ``-w`` ``--window``, ``-p`` ``--policy``,
``-i`` ``--interval``, ``-o`` ``--output``. The environment variables behind the defaults are read in
``tritonops.settings`` only.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tritonops.settings import Settings, load_settings

REPOSITORY = typer.Option(
    None,
    "--repository",
    "-r",
    help="Model repository [default: $TRITONOPS_REPOSITORY, else ./model_repository].",
    show_default=False,
)
STATE = typer.Option(
    None,
    "--state",
    help="Control plane state: a SQLite file or postgresql://user@host:port/db "
    "[default: $TRITONOPS_STATE, else ./.tritonops/state.db].",
    show_default=False,
)
JSON = typer.Option(False, "--json", help="Print the result as one JSON object (schema: docs/cli.md).")
ACTOR = typer.Option(None, "--actor", help="Who acts, for the audit log [default: $TRITONOPS_ACTOR, then $USER].")
REASON = typer.Option("", "--reason", help="Why, for the audit log.")


def settings(repository: Path | None = None, state: str | None = None) -> Settings:
    """``load_settings`` with the command line's ``--repository`` / ``--state`` winning over the environment."""
    return load_settings(repository=repository, state=state)
