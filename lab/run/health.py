"""The health check after a scenario, on every guest of the run: the console and the journal of
every boot scanned for signs of a sick guest (lab.run.checks); the journals kept as evidence."""

from __future__ import annotations

import re

from lab.base.artifacts import RunDir
from lab.base.errors import ScenarioFailed
from lab.machine import JOURNAL, Machine
from lab.run import checks
from lab.run.record import Health


def check_health(machines: dict[str, Machine], run_dir: RunDir, expected: tuple[re.Pattern[str], ...]) -> Health:
    """What the guests' consoles and journals show; unexpected signs of sickness fail the run (HealthFailed,
    which carries what was found)."""
    bad: list[checks.Hit] = []
    allowed: list[checks.Hit] = []
    for name, machine in machines.items():
        prefix = f"{name}/" if len(machines) > 1 else ""
        where = f"{name} " if prefix else ""
        for source, text in _sources(machine, run_dir, prefix):
            found_bad, found_allowed = checks.scan(text, f"{where}{source}", expected)
            bad, allowed = bad + found_bad, allowed + found_allowed
    health = Health([vars(h) for h in bad], [vars(h) for h in allowed])
    run_dir.write_evidence("health.txt", checks.report(bad + allowed) or "no signs of a sick guest\n")
    if bad:
        raise HealthFailed(f"health check: the guest shows signs of trouble:\n{checks.report(bad)}", health)
    return health


class HealthFailed(ScenarioFailed):
    def __init__(self, message: str, health: Health) -> None:
        super().__init__(message)
        self.health = health


def _sources(machine: Machine, run_dir: RunDir, prefix: str) -> list[tuple[str, str]]:
    """The console, and each boot's journal (written to evidence/[host/]journal*.txt)."""
    journals = [*machine.journals, *([machine.succeed(JOURNAL)] if machine.is_running() else [])]
    sources = [("console", machine.console_path.read_text(errors="replace"))]
    for number, journal in enumerate(journals, start=1):
        name = "journal.txt" if number == len(journals) else f"journal-boot-{number}.txt"
        run_dir.write_evidence(f"{prefix}{name}", journal)
        sources.append((f"journal, boot {number}", journal))
    return sources
