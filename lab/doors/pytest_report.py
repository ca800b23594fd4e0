"""What the pytest plugin reports of the lab's runs: `--lab-report DIR` (summary.md/.json, junit.xml and
index.html of every run, xdist-safe), and at the end of every session the runs that passed only on a re-run
and the failures known issues cover."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from lab.doors.parallel import Job, Outcome
from lab.doors.report import write
from lab.run.record import RunResult

RESULT = "lab_result"  # user property: the run's result.json, read by the report
STATUS = "lab_status"  # user property: flaky or known, for the terminal's summary
EXIT_CODES = {"passed": 0, "flaky": 0, "known": 0, "failed": 1}  # anything else is an error (2)
_REPORT = pytest.StashKey[list[Path]]()


class RerunSummary:
    """The runs that passed only on a re-run, and the failures known issues cover, with what failed."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = []
        for report in (r for key in ("passed", "xfailed") for r in terminalreporter.stats.get(key, [])):
            properties = dict(report.user_properties)
            if report.when != "call" or STATUS not in properties or not Path(str(properties.get(RESULT))).is_file():
                continue
            result = RunResult.load(Path(str(properties[RESULT])))
            if result.status == "flaky":
                failures = "; ".join(a.get("failure", "")[:120] for a in result.attempts[:-1])
                lines.append(f"FLAKY {report.nodeid}: passed on attempt {len(result.attempts)} after: {failures}")
            else:
                lines.append(f"KNOWN {report.nodeid}: {result.known_issue.get('tracker')} "
                             f"(until {result.known_issue.get('expires')})")
        if lines:
            terminalreporter.section("lab: flaky runs and known issues")
            for line in lines:
                terminalreporter.write_line(line)


class Reporter:
    """Collects the runs' results from the test reports (on the xdist controller too) and writes them."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.start = directory, time.monotonic()
        self.outcomes: list[Outcome] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = dict(report.user_properties).get(RESULT)
        if report.when != "teardown" or not path or not Path(str(path)).is_file():
            return
        result = RunResult.load(Path(str(path)))
        self.outcomes.append(Outcome(Job(result.scenario, run_id=result.run_id), result.status,
                                     EXIT_CODES.get(result.status, 2), result.wall_seconds, result.image,
                                     result.artifacts))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        jobs = getattr(session.config.option, "numprocesses", None) or 1  # pytest-xdist's -n
        paths = write(self.directory, self.outcomes, time.monotonic() - self.start, int(jobs))
        session.config.stash[_REPORT] = paths

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        paths = terminalreporter.config.stash.get(_REPORT, [])
        if paths:
            terminalreporter.write_line(f"lab report: {', '.join(str(p) for p in paths)}")
