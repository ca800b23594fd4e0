"""Health checks after a scenario: signs of a sick guest on its console and in its journal.

A hit fails the scenario with the matching lines, unless the scenario declared
that line expected (narrowly, by regex: e.g. thin-pool exhaustion's I/O errors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (what it means, regex): each found on its own line of the console or journal.
SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((what, re.compile(rx)) for what, rx in (
    ("kernel panic", r"Kernel panic - not syncing"),
    ("kernel oops", r"\bOops\b|\bOops:"),
    ("kernel BUG", r"\bBUG: "),
    ("kernel call trace", r"Call Trace:"),
    ("systemd ordering cycle", r"Ordering cycle found"),
    ("OOM killer", r"invoked oom-killer|Out of memory: Killed process"),
    ("emergency or rescue shell", r"You are in (emergency|rescue) mode|Entering (emergency|rescue) mode"),
    ("a service dumped core", r"dumped core"),
))


@dataclass(frozen=True)
class Hit:
    source: str  # "console" or "journal"
    sign: str
    line: str


def scan(text: str, source: str, expected: tuple[re.Pattern[str], ...]) -> tuple[list[Hit], list[Hit]]:
    """(unexpected hits, expected hits) in `text`."""
    bad: list[Hit] = []
    allowed: list[Hit] = []
    for line in text.splitlines():
        for sign, pattern in SIGNS:
            if pattern.search(line):
                hit = Hit(source, sign, line.strip())
                (allowed if any(e.search(line) for e in expected) else bad).append(hit)
                break
    return bad, allowed


def report(hits: list[Hit]) -> str:
    return "\n".join(f"  [{h.source}] {h.sign}: {h.line}" for h in hits)
