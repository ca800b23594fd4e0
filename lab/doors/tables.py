"""Tables on the terminal (`lab list`, `lab images list`, `lab config`, the summary of several runs) with
rich: columns sized to their cells, a long description wrapped in its own column on a terminal; through a
pipe each row stays one line, for grep (scripts want --json)."""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 400  # columns a table may take when no terminal says how many it has


def render(header: Sequence[str], rows: Iterable[Sequence[str]], *, terminal: bool | None = None) -> str:
    """The table as text: `header`'s columns, the last one wrapping on a terminal."""
    on_terminal = sys.stdout.isatty() if terminal is None else terminal
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for index, name in enumerate(header):
        last = index == len(header) - 1
        table.add_column(name, no_wrap=not (last and on_terminal), overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # text as it is: "[stand-ins: …]" is no markup
    out = io.StringIO()
    width = shutil.get_terminal_size().columns if on_terminal else PIPE_WIDTH
    Console(file=out, width=width, force_terminal=False, no_color=True, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    print(render(header, rows))
