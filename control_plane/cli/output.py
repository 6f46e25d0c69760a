"""How commands print: JSON with ``--json``, rich tables on a terminal, whole plain rows when piped.

On a terminal a table is a rich table (boxes, colour, fitted to the width). Anywhere else (a pipe, a file, a CI
log) it is plain text: a header and one line per row, columns padded to their widest cell, nothing cut or wrapped,
no colour, so ``tritonops status | grep model`` sees every field. ``NO_COLOR`` / ``FORCE_COLOR`` work as rich
documents them. Cell text is printed literally (``[`` in an error message is not markup); style a cell with
``styled``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # rich's console is built on first use: ``--help`` does not pay for it
    from pydantic import BaseModel
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

Cell: TypeAlias = "str | Text"


@functools.cache
def console() -> Console:
    """Standard output. ``soft_wrap``: lines are never broken by rich, the terminal (or nothing) wraps them."""
    from rich.console import Console

    return Console(soft_wrap=True)


@functools.cache
def error_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def styled(text: str, style: str) -> Text:
    """A cell (or line) in ``style`` on a terminal, plain text elsewhere."""
    from rich.text import Text

    return Text(text, style=style)


def _plain(cell: Cell) -> str:
    text = cell if isinstance(cell, str) else cell.plain
    return " ".join(text.splitlines())


def build_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
) -> Table:
    """A rich table of literal cells (for a terminal, or for ``rich.live``)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, title=title, caption=caption, caption_justify="left", show_header=show_header)
    for row in rows:
        table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in row))
    return table


def plain_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
) -> str:
    """The table as text: header and rows, columns padded to the widest cell, two spaces apart, nothing cut."""
    lines = [*([[_plain(c) for c in columns]] if show_header else []), *([_plain(c) for c in row] for row in rows)]
    widths = [max((len(line[i]) for line in lines), default=0) for i in range(len(columns))]
    body = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join([*([title] if title else []), *body, *([caption] if caption else [])])


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
) -> None:
    """A rich table on a terminal, ``plain_table`` anywhere else."""
    if console().is_terminal:
        console().print(build_table(columns, rows, title=title, caption=caption, show_header=show_header))
    else:
        text = plain_table(columns, rows, title=title, caption=caption, show_header=show_header)
        console().print(text, markup=False, highlight=False)


def print_json(result: BaseModel) -> None:
    """One result object as indented JSON on stdout (fields as documented in docs/cli.md)."""
    sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    sys.stdout.flush()
