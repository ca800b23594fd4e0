"""The guest's serial console, captured to a file: tail it and watch it."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# What the console shows at milestones of a boot.
MILESTONES = {
    "first_console_output": re.compile(r"\S"),
    "cloud_init_finished": re.compile(r"Cloud-init v\. \S+ finished at"),
}


_FINGERPRINTS = re.compile(r"-----BEGIN SSH HOST KEY FINGERPRINTS-----(.*?)-----END SSH HOST KEY FINGERPRINTS-----",
                           re.S)
_FINGERPRINT = re.compile(r"\b(SHA256:[A-Za-z0-9+/]{43})\b")


def host_key_fingerprints(text: str) -> frozenset[str]:
    """The SSH host key fingerprints cloud-init printed on the console (keys_to_console)."""
    return frozenset(fp for block in _FINGERPRINTS.findall(text) for fp in _FINGERPRINT.findall(block))


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console output captured)"
    clean = _ANSI.sub("", text.replace("\r", ""))
    kept = [line for line in clean.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(the console stayed silent)"


class ConsoleWatcher:
    """Polls a console file and records when each milestone first appears."""

    def __init__(self, path: Path, start: float, patterns: dict[str, re.Pattern[str]] = MILESTONES,
                 interval: float = 0.2) -> None:
        self.path, self.start, self.patterns, self.interval = path, start, patterns, interval
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"console:{path.name}", daemon=True)
        self._offset = 0
        self._buffer = ""

    def __enter__(self) -> ConsoleWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval) and len(self.seen) < len(self.patterns):
            self._scan()

    def _scan(self) -> None:
        try:
            with self.path.open("r", errors="replace") as console:
                console.seek(self._offset)
                chunk = console.read()
                self._offset = console.tell()
        except OSError:
            return
        self._buffer = (self._buffer + chunk)[-65536:]
        now = round(time.monotonic() - self.start, 2)
        for name, pattern in self.patterns.items():
            if name not in self.seen and pattern.search(self._buffer):
                self.seen[name] = now
