"""Progress bars for image builds and downloads (rich): live on a terminal, absent from a CI log, whose
lines (the log's blocks, a download's size and time) say the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)


def _columns(total: float | None) -> tuple[object, ...]:
    if total is None:  # a build: how long it has been going, the log's lines scroll above it
        return SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()
    return TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn()


@contextmanager
def progress(what: str, total: float | None = None, *, show: bool = True) -> Iterator[Callable[[float], None]]:
    """Yields `advance(amount)`. Shown only when `show` and stderr is a terminal."""
    console = Console(stderr=True)
    if not (show and console.is_terminal):
        yield lambda _amount: None
        return
    with Progress(*_columns(total), console=console, transient=True) as bar:  # type: ignore[arg-type]
        task = bar.add_task(what, total=total)
        yield lambda amount: bar.advance(task, amount)
