"""Re-running a failed scenario in a fresh VM (`lab run --rerun-failed N`), and failures known issues cover."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

from lab.base.config import Config
from lab.base.log import Log
from lab.run import known, runner
from lab.run.page import write_page
from lab.run.record import RESULT, RunResult, first_failure_line
from lab.run.runner import RunRequest


def run_with_reruns(config: Config, request: RunRequest, log: Log, reruns: int, *,
                    guest_failures: bool = False) -> int:
    """`lab run`'s door to the policy (`settled_run`): the exit code."""
    return settled_run(config, request, log, reruns, guest_failures=guest_failures)[0]


def settled_run(config: Config, request: RunRequest, log: Log, reruns: int, *, guest_failures: bool = False,
                make_run: Callable[[RunRequest], runner.Run] | None = None,
                ) -> tuple[int, runner.Run, RunResult | None]:
    """Run; after a failure of the lab's (exit 2) run again in a fresh VM, up to `reruns` times. A failure of
    the guest's (exit 1) is run again only with `guest_failures`: a later pass could hide the bug the run
    found. A pass after a failure is marked flaky in its result.json, and a failure after earlier attempts
    lists them; a failure a known issue covers is known (exit 0). Every attempt has the run's id (each
    removes what it made before the next starts), so the newest artifacts of that id are the final
    attempt's; only the last attempt may keep its VM. Both doors use it: `make_run` is pytest's Run.
    Returns the exit code, the last attempt's Run and its final record (None when it left none)."""
    request = replace(request, run_id=request.run_id or secrets.token_hex(4))
    issues = known.load(config.known_issues)  # a mistake in the file stops us before any guest boots
    retried = {1, 2} if guest_failures else {2}
    attempts: list[dict[str, Any]] = []
    for attempt in range(reruns + 1):
        last = attempt == reruns
        attempt_request = replace(request, keep_on_failure=request.keep_on_failure and last)
        run = make_run(attempt_request) if make_run else runner.Run(config, attempt_request, log)
        code = run.execute()
        attempts.append({"run_id": run.run_id, "exit_code": code, "artifacts": str(run.artifacts),
                         "failure": first_failure_line(run.artifacts)})
        if code not in retried:
            break
        if not last:
            log.warning(f"{request.scenario.name} failed (exit {code}); re-running in a fresh VM "
                        f"({attempt + 1} of {reruns})")
    record = run.artifacts / RESULT if run.artifacts is not None else None
    if record is None or not record.is_file():
        return code, run, None
    result = RunResult.load(record)
    if len(attempts) > 1:  # a pass after failures is flaky, never a plain pass
        result.attempts, result.status = attempts, "flaky" if code == 0 else result.status
        if code == 0:
            log.warning(f"FLAKY {request.scenario.name}: passed on attempt {len(attempts)} after failing")
    settled, noted = _settle(issues, request.scenario.name, code, result, log)
    if len(attempts) > 1 or noted:  # one write of the record, and the page says what it says
        result.write(record.parent)
        write_page(record.parent, result)
    return settled, run, result


def _settle(issues: list[known.KnownIssue], scenario: str, code: int, result: RunResult, log: Log) -> tuple[int, bool]:
    """A failure a known issue covers is known (exit 0) until the issue expires; then it fails again, saying
    so. The exit code, and whether the record changed."""
    if code not in (1, 2):
        return code, False
    current, expired = known.find(issues, scenario, result.failure, date.today())
    if current is not None:
        result.status = "known"
        result.known_issue = {"tracker": current.tracker, "expires": current.expires.isoformat()}
        log.warning(f"KNOWN {scenario}: {current.tracker} (known until {current.expires})")
        return 0, True
    if expired is not None:
        said = f"the known issue {expired.tracker} expired on {expired.expires}: it fails again"
        result.failure += f"\n  {said}"
        log.warning(f"{scenario}: {said}")
        return code, True
    return code, False
