"""Timed, nested log blocks on the standard logging module: the terminal and the run's transcript.

Every action is a block: "start the VM" ... "(finished: start the VM in 3.21 s)". Each Log has a logger of
its own under `lab` (runs in one process do not mix transcripts); the transcript is a DEBUG file handler on
it, and the terminal one handler on `lab` whose level the CLI's -v/-q set. Command outputs and paramiko's
records are DEBUG: in the transcript always, on the terminal with -v.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = "lab"
RESULT = logging.INFO + 5  # a run's PASSED/FAILED line: shown under -q too
logging.addLevelName(RESULT, "RESULT")
_serial = itertools.count()
_VERBOSITY = {-1: RESULT, 0: logging.INFO}


class _Terminal(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes (pytest swaps it)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_terminal(verbosity: int = 0) -> None:
    """Show the lab's records on stderr: results and warnings (-1, -q), actions (0), everything (1+, -v)."""
    root = logging.getLogger(ROOT)
    root.setLevel(logging.DEBUG)
    root.propagate = False  # pytest's log capture would otherwise repeat every run in its reports
    for old in [h for h in root.handlers if isinstance(h, _Terminal)]:
        root.removeHandler(old)
    handler = _Terminal()
    handler.setLevel(_VERBOSITY.get(verbosity, logging.DEBUG))
    root.addHandler(handler)


class Log:
    def __init__(self, *, terminal: bool = True, label: str = "") -> None:
        logging.getLogger(ROOT).propagate = False
        self.logger = logging.getLogger(f"{ROOT}.log{next(_serial)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = terminal
        self._label = label  # before each line (a test worker's name)
        self._transcript: logging.Handler | None = None
        self._depth = 0

    @property
    def on_terminal(self) -> bool:
        return self.logger.propagate

    def child(self, name: str) -> str:
        """The name of a logger whose records reach this log (paramiko's, for one guest)."""
        return f"{self.logger.name}.{name}"

    def open_transcript(self, path: Path) -> None:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))  # private from birth
        handler = logging.FileHandler(path, encoding="utf-8")
        formatter = logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        self.logger.addHandler(handler)
        self._transcript = handler

    def close(self) -> None:
        if self._transcript:
            self.logger.removeHandler(self._transcript)
            self._transcript.close()
            self._transcript = None

    def _emit(self, level: int, message: str, prefix: str) -> None:
        lead = f"{self._label}{'  ' * self._depth}{prefix + ' # ' if prefix else ''}"
        for line in message.splitlines() or [""]:
            self.logger.log(level, "%s%s", lead, line)

    def info(self, message: str, *, prefix: str = "") -> None:
        self._emit(logging.INFO, message, prefix)

    def transcript(self, message: str, *, prefix: str = "") -> None:
        """Detail (command outputs, too long for a terminal): the transcript, and the terminal with -v."""
        self._emit(logging.DEBUG, message, prefix)

    def result(self, message: str) -> None:
        self._emit(RESULT, message, "")

    def warning(self, message: str) -> None:
        self._emit(logging.WARNING, f"WARNING: {message}", "")

    @contextmanager
    def nested(self, message: str) -> Iterator[None]:
        self.info(message)
        start = time.monotonic()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.info(f"(finished: {message} in {time.monotonic() - start:.2f} s)")
