"""`lab run -j N` on a terminal: one live line per run (scenario, host, what it is doing, elapsed) instead of
every run's log interleaved; a run's own last lines (its verdict, a failure's explanation, its report) are
printed above the board as it ends. In CI or through a pipe the runs' lines stay plain, each prefixed with
its run's name (parallel.py)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

KEPT = 60  # lines of a run's output kept for its ending
_STEP = re.compile(r"^step: (.+)$")
_COMMAND = re.compile(r"^\s*([a-z][a-z0-9-]{0,30}) # (\$ .+)$")  # "  vm1 # $ lsblk": a guest's command
_VERDICT = re.compile(r"^(PASSED|FAILED|ERROR|FLAKY|KNOWN|WARNING: (?:FLAKY|KNOWN)) ")


def wanted(out: TextIO) -> bool:
    """Live lines on a terminal only, never in CI (its logs want plain lines)."""
    return out.isatty() and not os.environ.get("CI")


@dataclass
class _Run:
    label: str
    start: float = field(default_factory=time.monotonic)
    host: str = ""
    step: str = ""
    doing: str = "starting"
    said_verdict: bool = False  # its verdict is out: what follows is no longer what it is doing
    done: bool = False  # its process ended
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT))

    def read(self, line: str) -> None:
        """What the run is at, from its own log line: a step begins, a guest runs a command, the lab does
        something ("vm1: restoring a saved guest"); nothing after its verdict."""
        self.lines.append(line)
        if self.said_verdict or _VERDICT.match(line):
            self.said_verdict = True
        elif step := _STEP.match(line):
            self.step, self.doing = step.group(1), ""
        elif command := _COMMAND.match(line):
            self.host, self.doing = command.group(1), command.group(2)
        elif line.startswith("(finished:"):
            self.doing = ""
        elif line and not line[0].isspace():
            self.doing = line


class Board:
    """The runs' live lines; `feed` each run's output lines, `end` it with its status."""

    def __init__(self, out: TextIO) -> None:
        self.console = Console(file=out)
        self.runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._live = Live(get_renderable=self._table, console=self.console, refresh_per_second=2, transient=True)

    def __enter__(self) -> Board:
        self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._live.stop()
        self.console.print(self._table())  # the board's last state stays on the screen

    def begin(self, key: str, label: str) -> None:
        with self._lock:
            self.runs[key] = _Run(label)

    def feed(self, key: str, line: str) -> None:
        with self._lock:
            self.runs[key].read(line.rstrip("\n"))

    def end(self, key: str, status: str) -> None:
        """The run's verdict and what follows it (a failure's explanation, the report's path) above the board."""
        with self._lock:
            run = self.runs[key]
            run.done, run.step, run.doing = True, "", f"{status} in {time.monotonic() - run.start:.0f} s"
            lines = list(run.lines)
        start = next((i for i in range(len(lines) - 1, -1, -1) if _VERDICT.match(lines[i])), max(len(lines) - 20, 0))
        for line in lines[start:]:
            self._live.console.print(f"[{run.label}] {line}", markup=False, highlight=False, soft_wrap=True)

    def _table(self) -> Table:
        table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
        table.add_column("run", no_wrap=True)
        table.add_column("host", no_wrap=True, min_width=5)
        table.add_column("step", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("now", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("elapsed", no_wrap=True, justify="right", min_width=7)
        with self._lock:
            runs = list(self.runs.values())
        now = time.monotonic()
        for run in runs:
            table.add_row(run.label, run.host, run.step, run.doing, "" if run.done else f"{now - run.start:.0f} s")
        return table
