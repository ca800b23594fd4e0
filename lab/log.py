"""Timed, nested log blocks to the terminal and the run's transcript.

Every action is a block: "start the VM" ... "(finished: start the VM in 3.21 s)".
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO


class Log:
    def __init__(self, terminal: TextIO | None = sys.stderr, *, label: str = "") -> None:
        self._terminal = terminal
        self._label = label  # before each terminal line (a test worker's name)
        self._transcript: TextIO | None = None
        self._depth = 0
        self._lock = threading.Lock()

    def open_transcript(self, path: Path) -> None:
        self._transcript = path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._transcript:
            self._transcript.close()
            self._transcript = None

    def info(self, message: str, *, prefix: str = "", terminal: bool = True) -> None:
        indent = "  " * self._depth
        lead = f"{prefix} # " if prefix else ""
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        with self._lock:
            for line in message.splitlines() or [""]:
                if terminal and self._terminal:
                    print(f"{self._label}{indent}{lead}{line}", file=self._terminal, flush=True)
                if self._transcript:
                    self._transcript.write(f"{stamp} {indent}{lead}{line}\n")
            if self._transcript:
                self._transcript.flush()

    def transcript(self, message: str, *, prefix: str = "") -> None:
        """Write to the transcript only (command outputs, too long for a terminal)."""
        self.info(message, prefix=prefix, terminal=False)

    def warning(self, message: str) -> None:
        self.info(f"WARNING: {message}")

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
