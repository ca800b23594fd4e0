"""Known issues: a failure that matches one (a pattern, a tracker link, an expiry date) is reported "known"
instead of failed until the date passes; then it fails again, saying so. The file is the project's own
(`known-issues.toml`, or the `known-issues` setting):

    [[issue]]
    scenario = "system-containers"         # a glob of scenario names; every scenario when left out
    pattern = "docker0 .* not in .*"       # a regex searched in the run's failure
    tracker = "https://tracker.example/123"
    expires = 2027-01-31
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.base.errors import UsageError

URL = re.compile(r"^https?://\S+$")


@dataclass(frozen=True)
class KnownIssue:
    pattern: re.Pattern[str]
    tracker: str
    expires: datetime.date
    scenario: str = "*"

    def matches(self, scenario: str, failure: str) -> bool:
        return fnmatch.fnmatchcase(scenario, self.scenario) and self.pattern.search(failure) is not None


def load(path: Path) -> list[KnownIssue]:
    """The file's issues; none when there is no file. A mistake in it is one line naming the entry."""
    if not path.is_file():
        return []
    try:
        entries = tomllib.loads(path.read_text()).get("issue", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    if not isinstance(entries, list):
        raise UsageError(f"{path}: [[issue]] entries expected")
    return [_issue(path, number, entry) for number, entry in enumerate(entries, start=1)]


def _issue(path: Path, number: int, entry: object) -> KnownIssue:
    where = f"{path}: issue {number}"
    if not isinstance(entry, dict) or set(entry) - {"scenario", "pattern", "tracker", "expires"}:
        raise UsageError(f"{where}: keys are scenario, pattern, tracker and expires")
    tracker, expires, scenario = entry.get("tracker"), entry.get("expires"), entry.get("scenario", "*")
    if not isinstance(tracker, str) or not URL.match(tracker):
        raise UsageError(f"{where}: tracker must be an http(s) link")
    if not isinstance(expires, datetime.date) or isinstance(expires, datetime.datetime):
        raise UsageError(f"{where}: expires must be a date (expires = 2027-01-31)")
    if not isinstance(scenario, str) or not scenario:
        raise UsageError(f"{where}: scenario must be a name or a glob")
    try:
        pattern = re.compile(str(entry.get("pattern", "")))
    except re.error as exc:
        raise UsageError(f"{where}: pattern: {exc}") from None
    if not pattern.pattern:
        raise UsageError(f"{where}: pattern is missing")
    return KnownIssue(pattern, tracker, expires, scenario)


def find(issues: list[KnownIssue], scenario: str, failure: str,
         today: datetime.date) -> tuple[KnownIssue | None, KnownIssue | None]:
    """(the issue that still covers this failure, the expired one that matches it), either None."""
    matching = [issue for issue in issues if issue.matches(scenario, failure)]
    current = next((issue for issue in matching if issue.expires >= today), None)
    expired = next((issue for issue in matching if issue.expires < today), None)
    return current, expired
