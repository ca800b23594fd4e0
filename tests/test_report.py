"""Reports of several runs: summary.json/.md and JUnit XML, one testcase per scenario x image."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from lab.doors.parallel import Job, Outcome
from lab.doors.report import write


def _outcome(tmp_path: Path, name: str, status: str, code: int, **result: object) -> Outcome:
    run_dir = tmp_path / f"run-{name}"
    run_dir.mkdir()
    (run_dir / "result.json").write_text(json.dumps({"run_id": "abcd1234", "status": status, **result}))
    return Outcome(Job(name), status, code, 12.3, "lab-atomic", str(run_dir))


def test_reports_name_each_run_its_status_and_failure(tmp_path: Path) -> None:
    outcomes = [
        _outcome(tmp_path, "thinpool-full", "passed", 0, phases={"scenario": 100.0}),
        _outcome(tmp_path, "overlay-xfs", "failed", 1, failure="step 'docker refuses': exit 0\n  artifacts: x"),
        _outcome(tmp_path, "pv-lost", "flaky", 0, attempts=[{"exit_code": 1}, {"exit_code": 0}]),
        Outcome(Job("smoke"), "error", 2, 0.5, "", "(no artifacts: exit 2)"),
    ]
    summary_json, summary_md, junit, _ = write(tmp_path / "report", outcomes, 99.0, 2)
    runs = json.loads(summary_json.read_text())["runs"]
    assert [(r["scenario"], r["status"]) for r in runs] == [
        ("thinpool-full", "passed"), ("overlay-xfs", "failed"), ("pv-lost", "flaky"), ("smoke", "error")]
    assert runs[0]["phases"] == {"scenario": 100.0}
    assert "| overlay-xfs | lab-atomic | failed |" in summary_md.read_text()
    assert "step 'docker refuses': exit 0" in summary_md.read_text()
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["overlay-xfs"].find("failure").get("message") == "step 'docker refuses': exit 0"  # type: ignore[union-attr]
    assert cases["smoke"].find("error") is not None
    assert cases["pv-lost"].find("properties/property").get("value") == "2"  # type: ignore[union-attr]
    flaky = cases["pv-lost"].findall("flakyFailure")  # Surefire's element: the pass is kept, the attempt shown
    assert [f.get("message") for f in flaky] == ["exit 1"] and cases["pv-lost"].find("failure") is None
    passed = cases["thinpool-full"]
    assert passed.find("failure") is None and passed.get("classname") == "lab.lab-atomic"
    assert "artifacts: " in (cases["thinpool-full"].findtext("system-out") or "")


def test_the_runs_page_links_each_report_and_shows_the_trend(tmp_path: Path) -> None:
    """index.html: each run's report linked (where it has one) and its scenario's wall in earlier reports."""
    earlier = tmp_path / "nightly-20261205T000000Z"
    earlier.mkdir()
    (earlier / "summary.json").write_text(json.dumps({"runs": [
        {"scenario": "thinpool-full", "image": "lab-atomic", "params": {}, "wall_seconds": 80.0},
        {"scenario": "thinpool-full", "image": "lab-atomic", "params": {"mode": "error"}, "wall_seconds": 40.0}]}))
    passed = _outcome(tmp_path, "thinpool-full", "passed", 0)
    (Path(passed.artifacts) / "report.html").write_text("<html></html>")
    index = write(tmp_path / "nightly-20261206T000000Z", [passed, _outcome(tmp_path, "pv-lost", "failed", 1)],
                  99.0, 2)[3]
    text = index.read_text()
    assert f'<a href="../{Path(passed.artifacts).name}/report.html">' in text
    assert "80.0, 12.3" in text and "40.0" not in text  # the same variant's earlier wall, then this one's
    assert text.count("report.html</a>") == 1  # pv-lost has no page to link


def test_the_reports_say_where_the_time_went_by_kind(tmp_path: Path) -> None:
    """A warm run with a reboot (its boot began at 10 s, ready at 40 s) inside a 35 s step, and a cold one:
    each run's kinds, their sums and shares on the page and in summary.md."""
    warm = _outcome(tmp_path, "a", "passed", 0, start="warm", phases={"restore": 2.0, "scenario": 40.0, "cleanup": 1.0},
                    steps=[{"name": "reboot", "status": "passed", "start": 5.0, "seconds": 35.0}],
                    boots=[{"host": "vm1", "boot_id": "b1", "ready": 2.0, "began": 0.0},
                           {"host": "vm1", "boot_id": "b2", "ready": 40.0, "began": 10.0}])
    cold = _outcome(tmp_path, "b", "passed", 0, start="cold", phases={"boot": 18.0, "scenario": 50.0},
                    steps=[{"name": "work", "status": "passed", "start": 20.0, "seconds": 50.0}])
    summary_json, summary_md, _, index = write(tmp_path / "report", [warm, cold], 99.0, 2)
    runs = json.loads(summary_json.read_text())["runs"]
    assert runs[0]["time_by_kind"] == {"warm restore": 2.0, "reboots and resets": 30.0, "steps' own work": 5.0,
                                       "between steps": 5.0, "cleanup": 1.0}
    assert runs[1]["time_by_kind"] == {"cold boot": 18.0, "steps' own work": 50.0}
    text = index.read_text()
    rows = re.findall(r"<tr><td>([\w&#; ]+)</td><td>([\d.]+)</td><td>([\d.]+) %</td></tr>", text)
    assert rows == [("steps&#39; own work", "55.0", "49.5"), ("reboots and resets", "30.0", "27.0"),
                    ("cold boot", "18.0", "16.2"), ("between steps", "5.0", "4.5"), ("warm restore", "2.0", "1.8"),
                    ("cleanup", "1.0", "0.9")]
    assert '<tr><td>a</td><td>warm</td><td>2</td>' in text  # each run's row: its start, its boots, its kinds
    assert "| reboots and resets | 30.0 | 27.0 % |" in summary_md.read_text()


def test_a_setup_made_into_a_checkpoint_is_its_own_kind(tmp_path: Path) -> None:
    """The setup's steps (marked with its name) count as the setup, not as the steps' own work."""
    made = _outcome(tmp_path, "a", "passed", 0, start="checkpoint x (k, made by this run)",
                    phases={"restore": 4.0, "setup": 60.0, "save": 3.0, "scenario": 20.0},
                    steps=[{"name": "build", "status": "passed", "start": 2.0, "seconds": 59.0, "setup": "x"},
                           {"name": "check", "status": "passed", "start": 70.0, "seconds": 18.0}])
    runs = json.loads(write(tmp_path / "report", [made], 99.0, 1)[0].read_text())["runs"]
    assert runs[0]["time_by_kind"] == {"warm restore": 4.0, "save for warm starts": 3.0, "setup": 60.0,
                                       "steps' own work": 18.0, "between steps": 2.0}


def test_a_failure_after_reruns_lists_the_earlier_attempts(tmp_path: Path) -> None:
    attempts = [{"exit_code": 2, "failure": "ERROR: libvirt went away"}, {"exit_code": 1, "failure": "step x"}]
    failed = _outcome(tmp_path, "wobbly", "failed", 1, failure="step x", attempts=attempts)
    junit = write(tmp_path / "report", [failed], 9.0, 1)[2]
    case = ET.parse(junit).getroot().find("testcase")
    assert case is not None and case.find("failure") is not None
    assert [r.get("message") for r in case.findall("rerunFailure")] == ["ERROR: libvirt went away"]


def test_a_known_failure_is_skipped_in_junit_with_its_tracker(tmp_path: Path) -> None:
    known = _outcome(tmp_path, "system-containers", "known", 0, failure="step x",
                     known_issue={"tracker": "https://tracker.example/42", "expires": "2027-01-31"})
    case = ET.parse(write(tmp_path / "report", [known], 9.0, 1)[2]).getroot().find("testcase")
    assert case is not None and case.find("failure") is None
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message") == "known issue https://tracker.example/42 (until 2027-01-31)"
