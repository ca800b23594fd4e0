"""Re-running a failed scenario in a fresh VM (`lab run --rerun-failed N`), and failures known issues cover."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.base.log import Log
from lab.run import known, runner
from lab.run.page import write_page
from lab.run.record import RESULT, RunResult, first_failure_line, record_attempts, record_known
from lab.run.runner import RunRequest


def run_with_reruns(config: Config, request: RunRequest, log: Log, reruns: int, *,
                    guest_failures: bool = False) -> int:
    """Run; after a failure of the lab's (exit 2) run again in a fresh VM, up to `reruns` times. A failure of
    the guest's (exit 1) is run again only with `guest_failures`: a later pass could hide the bug the run
    found. A pass after a failure is marked flaky in its result.json, and a failure after earlier attempts
    lists them. Every attempt has the run's id (each removes what it made before the next starts), so the
    newest artifacts of that id are the final attempt's; only the last attempt may keep its VM."""
    request = replace(request, run_id=request.run_id or secrets.token_hex(4))
    issues = known.load(config.known_issues)  # a mistake in the file stops us before any guest boots
    retried = {1, 2} if guest_failures else {2}
    attempts: list[dict[str, Any]] = []
    for attempt in range(reruns + 1):
        last = attempt == reruns
        run = runner.Run(config, replace(request, keep_on_failure=request.keep_on_failure and last), log)
        code = run.execute()
        attempts.append({"run_id": run.run_id, "exit_code": code, "artifacts": str(run.artifacts),
                         "failure": first_failure_line(run.artifacts)})
        if code not in retried:
            break
        if not last:
            log.warning(f"{request.scenario.name} failed (exit {code}); re-running in a fresh VM "
                        f"({attempt + 1} of {reruns})")
    if len(attempts) > 1 and run.artifacts is not None:
        record_attempts(run.artifacts, attempts, flaky=code == 0)
        if code == 0:
            log.warning(f"FLAKY {request.scenario.name}: passed on attempt {len(attempts)} after failing")
    settled = _settle(issues, request.scenario.name, code, run.artifacts, log)
    if run.artifacts is not None and (len(attempts) > 1 or settled != code):  # the page says what the record says
        write_page(run.artifacts, RunResult.load(run.artifacts / RESULT))
    return settled


def _settle(issues: list[known.KnownIssue], scenario: str, code: int, run_dir: Path | None, log: Log) -> int:
    """A failure a known issue covers is known (exit 0) until the issue expires; then it fails again, saying so."""
    if code not in (1, 2) or run_dir is None or not (run_dir / RESULT).is_file():
        return code
    current, expired = known.find(issues, scenario, RunResult.load(run_dir / RESULT).failure, date.today())
    if current is not None:
        record_known(run_dir, current.tracker, current.expires.isoformat())
        log.warning(f"KNOWN {scenario}: {current.tracker} (known until {current.expires})")
        return 0
    if expired is not None:
        log.warning(f"{scenario}: the known issue {expired.tracker} expired on {expired.expires}: it fails again")
    return code
