"""Several runs side by side: `lab run A B C -j N`, `lab run --all -j N [--shard K/N]`.

Each run is its own `lab run NAME --run-id ID` process, so it has its own VM, port, artifacts
directory and signal handling, exactly as when run alone: this module sits with the front doors
(the CLI and the pytest plugin, see `[tool.importlinter]` in pyproject.toml), above the runner. It
picks the jobs, starts the longest-known first, shows each run's progress (a live line each on a terminal,
its output prefixed with its name elsewhere: live.py), forwards SIGTERM, and prints one summary table.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from lab.base.config import vcpu_share
from lab.base.errors import Interrupted, UsageError
from lab.doors.live import Board
from lab.doors.live import wanted as live_wanted
from lab.run.record import RESULT, RunResult, find_run_dir

T = TypeVar("T")

_SHARD = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Job:
    scenario: str
    image: str | None = None
    flags: tuple[str, ...] = ()  # passed to each `lab run`: --keep, --cold, ...
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def label(self) -> str:
        return f"{self.scenario}@{self.image}" if self.image else self.scenario

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "lab.doors.cli", "run", self.scenario, "--run-id", self.run_id]
        if self.image:
            argv += ["--image", self.image]
        return [*argv, *self.flags]


@dataclass(frozen=True)
class Outcome:
    job: Job
    status: str  # passed, failed, error, or "not run" (interrupted before it started)
    exit_code: int
    wall: float
    image: str
    artifacts: str


def shard(items: Sequence[T], spec: str, key: Callable[[T], str]) -> list[T]:
    """The K-th of N deterministic slices of `items` (sorted by `key`), for a CI matrix."""
    match = _SHARD.match(spec)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UsageError(f"--shard {spec!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    k, n = int(match.group(1)), int(match.group(2))
    return [item for i, item in enumerate(sorted(items, key=key)) if i % n == k - 1]


def longest_first(jobs: Sequence[Job], runs_dir: Path) -> list[Job]:
    """Jobs ordered by the wall time of their last run here (unknown ones first), to finish soonest."""
    walls: dict[str, float] = {}
    for path in sorted(runs_dir.glob(f"*/{RESULT}")):  # oldest first: a later run overrides
        try:
            result = RunResult.load(path)
        except UsageError:
            continue
        walls[result.scenario] = float(result.wall_seconds)
    return sorted(jobs, key=lambda j: -walls.get(j.scenario, float("inf")))


class ParallelRuns:
    def __init__(self, runs_dir: Path, jobs: int, out: TextIO = sys.stdout, live: bool | None = None) -> None:
        if jobs < 1:
            raise UsageError("-j/--jobs must be at least 1")
        self.runs_dir, self.jobs, self.out = runs_dir, jobs, out
        self.board = Board(out) if (live_wanted(out) if live is None else live) else None
        self._vcpus = vcpu_share(jobs)  # VMs share the host's cores instead of fighting over them
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Every job's outcome, in the order given. After Ctrl-C or SIGTERM no new run starts and
        the running ones clean up; their outcomes say so."""
        executor = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="lab-run")
        futures = {job.run_id: executor.submit(self._one, job) for job in longest_first(jobs, self.runs_dir)}
        previous = signal.signal(signal.SIGTERM, self._on_term)
        try:
            with self.board or contextlib.nullcontext():
                wait_all(futures.values())
        except Interrupted:
            self._stop(forward=True)
        except KeyboardInterrupt:
            self._stop(forward=False)  # the terminal sent SIGINT to every run already
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut cleanup short
            executor.shutdown(wait=True)
            signal.signal(signal.SIGTERM, previous)
        return [futures[j.run_id].result() for j in jobs]

    def _on_term(self, signum: int, _frame: object) -> None:
        raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")

    def _stop(self, *, forward: bool) -> None:
        """No new runs; running ones get SIGTERM (Ctrl-C already reached them) and clean up."""
        self._stopping.set()
        with self._lock:
            running = list(self._procs.values())
        for proc in running if forward else ():
            proc.send_signal(signal.SIGTERM)

    def _one(self, job: Job) -> Outcome:
        if self._stopping.is_set():
            return Outcome(job, "not run", 130, 0.0, job.image or "", "")
        return self._attempt(job)

    def _attempt(self, job: Job) -> Outcome:
        start = time.monotonic()
        proc = subprocess.Popen(job.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, env={**os.environ, "LAB_MAX_VCPUS": self._vcpus})
        with self._lock:
            self._procs[job.run_id] = proc
        if self.board:
            self.board.begin(job.run_id, job.label)
        assert proc.stdout is not None
        for line in proc.stdout:
            self._show(job, line)
        code = proc.wait()
        with self._lock:
            del self._procs[job.run_id]
        outcome = self._outcome(job, code, time.monotonic() - start)
        if self.board:
            self.board.end(job.run_id, outcome.status)
        return outcome

    def _show(self, job: Job, line: str) -> None:
        """A run's line: on the live board, or plain with the run's name before it."""
        if self.board:
            self.board.feed(job.run_id, line)
            return
        with self._lock:
            self.out.write(f"[{job.label}] {line}")
            self.out.flush()

    def _outcome(self, job: Job, code: int, wall: float) -> Outcome:
        return outcome_of(self.runs_dir, job, code, wall)


def outcome_of(runs_dir: Path, job: Job, code: int, wall: float) -> Outcome:
    """A finished job's outcome, from its result.json."""
    run_dir = find_run_dir(runs_dir, job.run_id)
    if run_dir is None:
        return Outcome(job, "error", code, wall, job.image or "", f"(no artifacts: exit {code})")
    result = RunResult.load(run_dir / RESULT)
    return Outcome(job, result.status, code, wall, result.image, str(run_dir))


def exit_code(outcomes: Sequence[Outcome]) -> int:
    if all(o.status in ("passed", "flaky", "known") for o in outcomes):
        return 0
    return 130 if any(o.status == "not run" or o.exit_code == 130 for o in outcomes) else 1
