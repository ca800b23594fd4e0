"""What a guest measured over time, for the run's report: a command's number sampled in the guest every few
seconds, and the journal's lines (the kernel's, a daemon's) that happened meanwhile, both on the run's clock."""

from __future__ import annotations

import base64
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypedDict

from lab.machine import Machine

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Point(TypedDict):
    at: float  # seconds from the run's start
    value: float


class JournalLine(TypedDict):
    at: float
    line: str


class Sample(TypedDict):
    """One `lab.sample` in result.json's `samples`."""

    command: str
    every: float
    points: list[Point]
    events: list[JournalLine]


@contextmanager
def sampled(vm: Machine, name: str, command: str, *, every: float, events: str, wall_t0: float,
            into: dict[str, Sample]) -> Iterator[None]:
    """Sample `command`'s first number every `every` s in the guest while the block runs (a loop there, so no
    SSH round trip slows the scenario); then keep the points and the journal's lines matching `events` in
    `into[name]`, as seconds from the run's start (`wall_t0`: its start on the host's clock, which the guest's
    follows)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    log, pid = f"/run/lab-sample-{slug}.log", f"/run/lab-sample-{slug}.pid"
    loop = (f"echo $$ > {pid}; while :; do printf '%s %s\\n' \"$(date +%s.%N)\" \"$({command} 2>&1 | head -n 1)\"; "
            f"sleep {every}; done")
    since = vm.succeed("date +%s.%N").strip()
    vm.succeed(f"setsid sh -c {shlex.quote(loop)} > {log} 2>&1 < /dev/null & sleep 0.2")
    try:
        yield
    finally:
        if vm.is_running() and not vm.state.gone:
            vm.execute(f"kill $(cat {pid}) 2>/dev/null")
            into[name] = {"command": command, "every": every,
                          "points": _points(vm.succeed(f"cat {log}"), wall_t0),
                          "events": _events(vm, since, events, wall_t0) if events else []}


def _points(text: str, wall_t0: float) -> list[Point]:
    points: list[Point] = []
    for line in text.splitlines():
        stamp, _, value = line.partition(" ")
        number = NUMBER.search(value)
        if number and NUMBER.fullmatch(stamp.strip() or "x"):
            points.append({"at": round(float(stamp) - wall_t0, 2), "value": float(number.group(0))})
    return points


def _events(vm: Machine, since: str, pattern: str, wall_t0: float) -> list[JournalLine]:
    """The journal's lines since `since` that match `pattern`, each at its journal time."""
    # the pattern travels base64-encoded: the journal logs this very command (sudo), which must not match it
    encoded = base64.b64encode(pattern.encode()).decode()
    lines = vm.succeed(f"journalctl -o short-unix --no-pager --since @{since} | "
                       f"grep -E -f <(echo {encoded} | base64 -d) || true")
    found: list[JournalLine] = []
    for line in lines.splitlines():
        stamp, _, text = line.partition(" ")
        if NUMBER.fullmatch(stamp):
            found.append({"at": round(float(stamp) - wall_t0, 2), "line": text.split(": ", 1)[-1]})
    return found


def wall_start(monotonic_t0: float) -> float:
    """The host's wall clock at a monotonic instant."""
    return time.time() - (time.monotonic() - monotonic_t0)
