"""Parallel runs, with stand-in `lab run` processes that write a result.json like the real one."""

from __future__ import annotations

import io
import json
import operator
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.base.errors import UsageError
from lab.doors.parallel import Job, ParallelRuns, exit_code, longest_first, shard
from lab.doors.report import table as summary

# A stand-in run: says hello, waits until its partner's flag exists (so it can
# only pass when both run at once), then records its result as a run would.
CHILD = """
import json, pathlib, sys, time
runs, run_id, name, partner = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print(f"hello from {name}", flush=True)
(runs / f"flag-{name}").touch()
deadline = time.monotonic() + 8
while partner and not (runs / f"flag-{partner}").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
status = "passed" if not partner or (runs / f"flag-{partner}").exists() else "failed"
run_dir = runs / f"20260101T000000.{run_id}Z-{name}"
run_dir.mkdir()
(run_dir / "result.json").write_text(json.dumps(
    {"run_id": run_id, "scenario": name, "image": "lab-test", "status": status, "wall_seconds": 1.0}))
sys.exit(0 if status == "passed" else 1)
"""


@dataclass(frozen=True)
class StandIn(Job):
    runs: Path = Path()
    partner: str = ""

    def argv(self) -> list[str]:
        return [sys.executable, "-c", CHILD, str(self.runs), self.run_id, self.scenario, self.partner]


def _pair(runs: Path) -> list[Job]:
    return [StandIn("alpha", runs=runs, partner="beta"), StandIn("beta", runs=runs, partner="alpha")]


def test_two_jobs_run_at_once_and_report_in_order(tmp_path: Path) -> None:
    out = io.StringIO()
    outcomes = ParallelRuns(tmp_path, 2, out).run(_pair(tmp_path))
    assert [(o.job.scenario, o.status, o.exit_code, o.image) for o in outcomes] == [
        ("alpha", "passed", 0, "lab-test"), ("beta", "passed", 0, "lab-test")]
    assert all(Path(o.artifacts).is_dir() for o in outcomes)
    assert "[alpha] hello from alpha\n" in out.getvalue() and "[beta] hello from beta\n" in out.getvalue()
    assert exit_code(outcomes) == 0


def test_one_at_a_time_the_pair_cannot_meet(tmp_path: Path) -> None:
    outcomes = ParallelRuns(tmp_path, 1, io.StringIO()).run(
        [StandIn("alpha", runs=tmp_path, partner="beta"), StandIn("gamma", runs=tmp_path)])
    assert [o.status for o in outcomes] == ["failed", "passed"]
    assert exit_code(outcomes) == 1
    table = summary(outcomes, 12.5, 1)
    assert table.splitlines()[0].split() == ["scenario", "image", "status", "wall", "artifacts"]
    assert "alpha" in table and "failed" in table
    assert table.endswith("1 of 2 passed in 12.5 s (-j 1)")


def test_a_run_that_leaves_no_result_is_an_error(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Crashing(Job):
        def argv(self) -> list[str]:
            return [sys.executable, "-c", "raise SystemExit(2)"]

    [outcome] = ParallelRuns(tmp_path, 1, io.StringIO()).run([Crashing("broken")])
    assert (outcome.status, outcome.exit_code) == ("error", 2)
    assert "no artifacts" in outcome.artifacts


LABEL = operator.attrgetter("label")


def test_shards_split_the_jobs_deterministically() -> None:
    jobs = [Job(name) for name in ("e", "b", "a", "d", "c")]
    slices = [shard(jobs, f"{k}/3", key=LABEL) for k in (1, 2, 3)]
    assert [[j.scenario for j in s] for s in slices] == [["a", "d"], ["b", "e"], ["c"]]
    assert shard(list(reversed(jobs)), "2/3", key=LABEL) == slices[1]
    for bad in ("0/3", "4/3", "1", "a/b"):
        with pytest.raises(UsageError):
            shard(jobs, bad, key=LABEL)


def test_longest_known_runs_start_first(tmp_path: Path) -> None:
    for stamp, name, wall in (("1", "short", 50.0), ("2", "long", 400.0), ("3", "short", 60.0)):
        (tmp_path / f"{stamp}-{name}").mkdir()
        (tmp_path / f"{stamp}-{name}" / "result.json").write_text(
            json.dumps({"scenario": name, "wall_seconds": wall}))
    jobs = [Job("short"), Job("long"), Job("new")]
    assert [j.scenario for j in longest_first(jobs, tmp_path)] == ["new", "long", "short"]


def test_a_job_runs_lab_run_with_its_run_id() -> None:
    job = Job("thinpool-full", "lab-atomic", ("--keep", "--cold"))
    assert job.argv()[1:] == ["-m", "lab.doors.cli", "run", "thinpool-full", "--run-id", job.run_id,
                              "--image", "lab-atomic", "--keep", "--cold"]
    assert job.label == "thinpool-full@lab-atomic"


# a `lab run --rerun-failed 1` whose first attempt failed: two directories with its run id, the newer flaky
RERUN = """
import json, pathlib, sys
runs, run_id, name = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for stamp, status in (("20260101T000000", "failed"), ("20260101T000100", "flaky")):
    run_dir = runs / f"{stamp}.000000Z-{name}"
    run_dir.mkdir()
    (run_dir / "result.json").write_text(json.dumps({"run_id": run_id, "scenario": name, "image": "lab-test",
                                                     "status": status, "wall_seconds": 1.0}))
"""


@dataclass(frozen=True)
class Rerun(Job):
    runs: Path = Path()

    def argv(self) -> list[str]:
        return [sys.executable, "-c", RERUN, str(self.runs), self.run_id, self.scenario]


def test_a_rerun_jobs_outcome_is_its_final_attempt(tmp_path: Path) -> None:
    [outcome] = ParallelRuns(tmp_path, 1, io.StringIO()).run([Rerun("wobbly", runs=tmp_path)])
    assert outcome.status == "flaky" and exit_code([outcome]) == 0
    assert outcome.artifacts.endswith("20260101T000100.000000Z-wobbly")
    assert "0 of 1 passed, 1 flaky" in summary([outcome], 3.0, 1)


def test_parallel_jobs_get_the_options_a_single_run_would(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`lab run A B --keep --cold` starts each `lab run` with the flags RunRequest itself renders."""
    from lab.doors import cli

    started: list[Job] = []
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    monkeypatch.setattr(cli.ParallelRuns, "run", lambda self, jobs: started.extend(jobs) or [])
    cli.main(["run", "smoke", "partition-v1", "--keep", "--cold", "--rerun-failed", "2"])
    assert [job.flags for job in started] == [("--keep", "--cold", "--rerun-failed", "2")] * 2
