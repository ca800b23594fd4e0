"""Re-running a failed scenario in a fresh VM (`lab run --rerun-failed N`)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from lab.base.config import Config
from lab.base.log import Log
from lab.run import runner
from lab.run.record import first_failure_line, record_attempts
from lab.run.runner import RunRequest


def run_with_reruns(config: Config, request: RunRequest, log: Log, reruns: int, *,
                    guest_failures: bool = False) -> int:
    """Run; after a failure of the lab's (exit 2) run again in a fresh VM, up to `reruns` times. A failure of
    the guest's (exit 1) is run again only with `guest_failures`: a later pass could hide the bug the run
    found. A pass after a failure is marked flaky in its result.json, and a failure after earlier attempts
    lists them. Every attempt has the run's id (each removes what it made before the next starts), so the
    newest artifacts of that id are the final attempt's; only the last attempt may keep its VM."""
    request = replace(request, run_id=request.run_id or secrets.token_hex(4))
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
    return code
