"""`lab run --rerun-failed N`: every attempt in a fresh VM under the run's id; a late pass is flaky."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.base.log import Log
from lab.run import runner
from lab.run.reruns import run_with_reruns
from lab.run.runner import RunRequest
from lab.scenario import declare


class FakeRun:
    """Fails its first `failures` attempts; records each attempt's request."""

    failures: ClassVar[int] = 1
    code: ClassVar[int] = 2  # how the failing attempts end: 2 the lab failed, 1 the guest did
    seen: ClassVar[list[RunRequest]] = []
    made: ClassVar[int] = 0  # attempts so far in this test: each its own directory

    def __init__(self, config: Config, request: RunRequest, log: Log) -> None:
        self.request, self.run_id = request, str(request.run_id)
        self.artifacts = config.runs_dir / f"attempt-{FakeRun.made}"
        FakeRun.made += 1

    def execute(self) -> int:
        self.seen.append(self.request)
        self.artifacts.mkdir(parents=True)
        passed = len(self.seen) > self.failures
        result: dict[str, Any] = {"run_id": self.run_id, "scenario": self.request.scenario.name,
                                  "artifacts": str(self.artifacts), "status": "passed" if passed else "failed",
                                  "failure": "" if passed else f"attempt {len(self.seen)} failed\n  detail"}
        (self.artifacts / "result.json").write_text(json.dumps(result))
        return 0 if passed else self.code


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Config:
    FakeRun.seen, FakeRun.failures, FakeRun.code, FakeRun.made = [], 1, 2, 0
    monkeypatch.setattr(runner, "Run", FakeRun)
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    return Config.from_env()


def _request(**kwargs: Any) -> RunRequest:
    return RunRequest(declare("wobbly", "A scenario", lambda lab: None), {}, **kwargs)


def test_a_pass_after_a_failure_is_flaky_under_one_run_id(fake_run: Config) -> None:
    assert run_with_reruns(fake_run, _request(keep_on_failure=True), Log(terminal=False), 2) == 0
    first, second = FakeRun.seen
    assert first.run_id == second.run_id and first.run_id is not None
    assert (first.keep_on_failure, second.keep_on_failure) == (False, False)  # only the last attempt keeps
    result = json.loads((fake_run.runs_dir / "attempt-1" / "result.json").read_text())
    assert result["status"] == "flaky" and [a["exit_code"] for a in result["attempts"]] == [2, 0]
    assert result["attempts"][0]["failure"] == "attempt 1 failed"


def test_the_last_attempt_may_keep_its_vm_and_stays_failed(fake_run: Config) -> None:
    FakeRun.failures = 5
    assert run_with_reruns(fake_run, _request(keep_on_failure=True), Log(terminal=False), 1) == 2
    assert [r.keep_on_failure for r in FakeRun.seen] == [False, True]
    result = json.loads((fake_run.runs_dir / "attempt-1" / "result.json").read_text())
    assert result["status"] == "failed" and [a["exit_code"] for a in result["attempts"]] == [2, 2]


def test_a_guest_failure_is_not_rerun_unless_asked(fake_run: Config) -> None:
    """kola's maintainers' point (coreos-assembler #2442): a pass after the guest misbehaved hides a bug."""
    FakeRun.code = 1
    assert run_with_reruns(fake_run, _request(), Log(terminal=False), 2) == 1
    assert len(FakeRun.seen) == 1
    FakeRun.seen = []
    assert run_with_reruns(fake_run, _request(), Log(terminal=False), 2, guest_failures=True) == 0
    assert len(FakeRun.seen) == 2


KNOWN = """
[[issue]]
scenario = "wob*"
pattern = "attempt \\\\d failed"
tracker = "https://tracker.example/42"
expires = {expires}
"""


def test_a_known_issue_turns_a_failure_known_until_it_expires(fake_run: Config, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    FakeRun.failures, FakeRun.code = 5, 1
    known_file = tmp_path / "known-issues.toml"
    monkeypatch.setenv("LAB_KNOWN_ISSUES", str(known_file))
    known_file.write_text(KNOWN.format(expires="2999-12-31"))
    assert run_with_reruns(Config.from_env(), _request(), Log(terminal=False), 0) == 0
    result = json.loads((fake_run.runs_dir / "attempt-0" / "result.json").read_text())
    assert result["status"] == "known"
    assert result["known_issue"] == {"tracker": "https://tracker.example/42", "expires": "2999-12-31"}
    assert 'class="status known"' in (fake_run.runs_dir / "attempt-0" / "report.html").read_text()
    known_file.write_text(KNOWN.format(expires="2020-01-01"))  # expired: the failure counts again
    assert run_with_reruns(Config.from_env(), _request(), Log(terminal=False), 0) == 1
    assert json.loads((fake_run.runs_dir / "attempt-1" / "result.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("entry", ['pattern = "x"\ntracker = "https://t/1"',  # no expiry
                                   'pattern = "("\ntracker = "https://t/1"\nexpires = 2999-01-01',
                                   'pattern = "x"\ntracker = "t/1"\nexpires = 2999-01-01',
                                   'pattern = "x"\ntracker = "https://t/1"\nexpires = 2999-01-01\nowner = "me"'])
def test_a_mistake_in_the_file_is_one_line_before_any_guest_boots(fake_run: Config, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    (tmp_path / "k.toml").write_text(f"[[issue]]\n{entry}\n")
    monkeypatch.setenv("LAB_KNOWN_ISSUES", str(tmp_path / "k.toml"))
    with pytest.raises(UsageError, match=r"k.toml: issue 1: "):
        run_with_reruns(Config.from_env(), _request(), Log(terminal=False), 0)
    assert FakeRun.seen == []


WOBBLY = '''
from lab.scenario import scenario


@scenario("wobbly", "A scenario whose runs the test fakes")
def wobbly(lab):
    pass
'''


@pytest.fixture
def plugin_door(pytester: pytest.Pytester, fake_run: Config, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest on a scenarios directory, each run a FakeRun (the plugin's own Run replaced too)."""
    (pytester.mkdir("scenarios") / "wobbly.py").write_text(WOBBLY)
    monkeypatch.setenv("LAB_SCENARIOS_DIR", str(pytester.path / "scenarios"))
    monkeypatch.setattr("lab.doors.pytest_plugin.Run", FakeRun)
    return pytester


def test_the_pytest_door_reruns_the_labs_failures_and_says_flaky(plugin_door: pytest.Pytester) -> None:
    """The nightly's door has lab run's policy: a lab failure re-run, the pass flaky, JUnit's flakyFailure."""
    report = plugin_door.path / "report"
    result = plugin_door.runpytest_inprocess("scenarios", "--lab-rerun-failed", "1", "--lab-report", str(report))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*lab: flaky runs and known issues*",
                                 "FLAKY scenarios/wobbly.py::wobbly*: passed on attempt 2 after: attempt 1 failed"])
    assert len(FakeRun.seen) == 2
    assert 'flakyFailure message="attempt 1 failed"' in (report / "junit.xml").read_text()


def test_the_pytest_door_leaves_a_guest_failure_failed(plugin_door: pytest.Pytester) -> None:
    FakeRun.code = 1
    result = plugin_door.runpytest_inprocess("scenarios", "--lab-rerun-failed", "2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*attempt 1 failed*"])
    assert len(FakeRun.seen) == 1
    FakeRun.seen = []
    plugin_door.runpytest_inprocess("scenarios", "--lab-rerun-failed", "2",
                                    "--lab-rerun-guest-failures").assert_outcomes(passed=1)


def test_the_pytest_door_xfails_a_known_issue_until_it_expires(plugin_door: pytest.Pytester, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    FakeRun.failures, FakeRun.code = 5, 1
    known_file = tmp_path / "known-issues.toml"
    monkeypatch.setenv("LAB_KNOWN_ISSUES", str(known_file))
    monkeypatch.setenv("CI", "1")  # the nightly's setting: a VM test that skips fails there, an xfail ran
    known_file.write_text(KNOWN.format(expires="2999-12-31"))
    result = plugin_door.runpytest_inprocess("scenarios", "-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["KNOWN scenarios/wobbly.py::wobbly*: https://tracker.example/42 (until 2999-12-31)",
                                 "*known issue https://tracker.example/42 (until 2999-12-31): attempt 1 failed*"])
    known_file.write_text(KNOWN.format(expires="2020-01-01"))
    result = plugin_door.runpytest_inprocess("scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the known issue https://tracker.example/42 expired on 2020-01-01: it fails again*"])
