"""make bench's script: its median of systemd-analyze lines, and bad input refused before any guest boots."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_phase_of_systemd_analyze_is_the_median_of_the_rounds() -> None:
    lines = ["2.9s (kernel) + 8.3s (initrd) + 16.0s (userspace) = 27.2s",
             "3.1s (kernel) + 1min 0.5s (initrd) + 15.0s (userspace) = 1min 18.6s",
             "2.0s (kernel) + 9.0s (initrd) + 21.0s (userspace) = 32.0s"]
    assert _bench()._analyze_median(lines) == "2.9s (kernel) + 9.0s (initrd) + 16.0s (userspace) = 27.9s"
    assert _bench()._analyze_median(["(restored: no boot)"] * 3) == "(restored: no boot)"


def test_a_bad_count_of_rounds_gets_one_line_and_exit_2() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BENCH_ROUNDS": "three"})
    assert proc.returncode == 2
    assert proc.stderr == "BENCH_ROUNDS: 'three' is not a count of rounds (1 or more)\n"
