"""Every command that reports can say it as JSON on stdout (its log stays on stderr): `lab config`, `lab doctor`,
`lab run` (the run's record; with several, one object per run). No hypervisor needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.doors import cli
from lab.run.record import RunResult


def test_config_and_doctor_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "--json"]) == 0
    settings = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert settings["libvirt-uri"]["source"] in ("default", "environment", "pyproject.toml")
    code = cli.main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (1 if report["problems"] else 0)
    assert {"ok": True, "what": "qemu-img installed"} in report["checks"] or report["problems"]


def test_a_run_prints_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))

    def run(config: object, request: object, log: object, reruns: int, **_: object) -> int:  # a passed run
        run_dir = tmp_path / "20261206T000000.000000Z-smoke"
        run_dir.mkdir()
        RunResult(request.run_id, "smoke", "lab-bookworm", {}, str(run_dir), status="passed").write(run_dir)  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(cli, "run_with_reruns", run)
    assert cli.main(["run", "smoke", "--run-id", "ab12cd34", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["run_id"], record["status"], record["schema"]) == ("ab12cd34", "passed", 2)


def test_several_runs_print_one_object_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from lab.doors.parallel import Outcome

    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    monkeypatch.setattr(cli.ParallelRuns, "run", lambda self, jobs: [
        Outcome(job, "passed", 0, 12.3, "lab-atomic", f"/runs/{job.scenario}") for job in jobs])
    assert cli.main(["run", "smoke", "partition-v1", "--json"]) == 0
    captured = capsys.readouterr()
    runs = json.loads(captured.out)  # the table went to stderr
    assert [(r["scenario"], r["status"], r["wall_seconds"]) for r in runs] == [("smoke", "passed", 12.3),
                                                                                ("partition-v1", "passed", 12.3)]
    assert "smoke" in captured.err
