"""`lab run -j N` on a terminal (a pty here): one live line per run with its host, step and what it is doing,
and each run's verdict and report printed above the board as it ends; in CI, plain prefixed lines."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.doors.parallel import Job, ParallelRuns

RUN = """
import sys, time
name = sys.argv[1]
for line in ["run 0000: " + name + " on lab-bookworm; artifacts /runs/x", "vm1: restoring a saved guest",
             "step: the guest comes up with no failed unit", "  vm1 # $ systemctl is-system-running"]:
    print(line, flush=True)
    time.sleep(0.8)
print("(finished: step: the guest comes up with no failed unit in 2.4 s)", flush=True)
print("PASSED " + name + " in 3.3 s (artifacts: /runs/x)", flush=True)
print("report: /runs/x/report.html", flush=True)
"""


@dataclass(frozen=True)
class FakeJob(Job):
    def argv(self) -> list[str]:
        return [sys.executable, "-c", RUN, self.scenario]


def _through_a_pty(tmp_path: Path) -> str:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    seen: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with os.fdopen(slave, "w") as terminal:
        ParallelRuns(tmp_path, 2, terminal).run([FakeJob("smoke"), FakeJob("overlay-semantics")])
    reader.join(timeout=5)
    os.close(master)
    return b"".join(seen).decode(errors="replace")


def test_each_run_is_one_live_line_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("COLUMNS", "140")
    shown = _through_a_pty(tmp_path)
    assert "\x1b[" in shown  # the board redraws itself in place
    for cell in ("run", "host", "step", "now", "elapsed", "vm1", "the guest comes up with no failed unit",
                 "$ systemctl is-system-running", "restoring a saved guest"):
        assert cell in shown, cell
    for name in ("smoke", "overlay-semantics"):
        assert f"[{name}] PASSED {name} in 3.3 s" in shown and f"[{name}] report: /runs/x/report.html" in shown
    assert "[smoke] step: the guest comes up" not in shown  # no interleaved logs


def test_ci_gets_plain_prefixed_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    shown = _through_a_pty(tmp_path)
    assert "[smoke] step: the guest comes up with no failed unit" in shown
    assert "elapsed" not in shown
