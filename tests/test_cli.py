"""Bad input: one line, exit code 2, no traceback, nothing left behind."""

import dataclasses
import json
from pathlib import Path

import pytest

from lab.base.errors import UsageError
from lab.doors.cli import main
from lab.doors.cli_kept import _logins
from lab.run.record import RunResult


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], tmp_path: Path) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists(), "a run directory was left behind"
    return err


def test_list_prints_each_scenario_with_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert any(line.split()[0] == "smoke" and "reboot" in line for line in capsys.readouterr().out.splitlines())


def test_unknown_scenario_lists_valid_names(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _fails(capsys, ["run", "no-such-scenario"], tmp_path)
    assert "unknown scenario 'no-such-scenario'; valid names:" in err and "smoke" in err


def test_set_without_equals(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "expected KEY=VALUE" in _fails(capsys, ["run", "smoke", "--set", "mode"], tmp_path)


def test_set_unknown_parameter(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "smoke has no parameter 'mode'" in _fails(capsys, ["run", "smoke", "--set", "mode=x"], tmp_path)


def test_a_size_parameter_refuses_what_is_no_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _fails(capsys, ["run", "thinpool-full", "--set", "pool_size=abc"], tmp_path)
    assert "--set pool_size=abc: expected a size (512M, 2G) or extents" in err


def test_image_path_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _fails(capsys, ["run", "smoke", "--image", str(tmp_path / "nope.qcow2")], tmp_path)
    assert "no such file" in err


def test_image_that_is_not_a_disk(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a disk image\n" * 100)
    err = _fails(capsys, ["run", "smoke", "--image", str(text)], tmp_path)
    assert "not a qcow2 or raw disk image" in err


def test_an_external_image_not_yet_imported_says_how_to_get_it(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    err = _fails(capsys, ["run", "smoke", "--image", "fedora-atomic-29"], tmp_path)
    assert "image fedora-atomic-29 is not imported: `lab images fetch fedora-atomic-29`" in err


def test_libvirt_unreachable_says_how_to_start_it(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_LIBVIRT_URI", f"qemu+unix:///system?socket={tmp_path}/no-such.sock")
    err = _fails(capsys, ["run", "smoke"], tmp_path)
    assert "cannot reach libvirt" in err and "make setup" in err


def test_run_without_a_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "name a scenario" in _fails(capsys, ["run"], tmp_path)


def test_several_scenarios_take_no_set(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _fails(capsys, ["run", "smoke", "atomic-host", "--set", "mode=x"], tmp_path)
    assert "apply to one scenario" in err


def test_several_scenarios_check_every_name_first(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _fails(capsys, ["run", "smoke", "no-such-scenario", "-j", "2"], tmp_path)
    assert "unknown scenario 'no-such-scenario'" in err


def test_bad_shard(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "expected K/N" in _fails(capsys, ["run", "--all", "--shard", "3/2"], tmp_path)


def test_replay_of_what_is_no_sos_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an archive\n")
    assert "not an sos report" in _fails(capsys, ["replay", str(tmp_path / "notes.txt")], tmp_path)


def test_version_and_json_listing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("lab (atomic-lab) ")
    assert main(["list", "--json"]) == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert listed["thinpool-full"]["image"] == "lab-atomic" and "mode" in listed["thinpool-full"]["params"]


def test_latest_without_runs_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "no latest run under" in _fails(capsys, ["ssh", "latest"], tmp_path)


def test_an_internal_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lab.doors.cli.Registry.load", lambda dirs: 1 / 0)
    err = _fails(capsys, ["list"], tmp_path)
    assert err.startswith("lab: internal error: ZeroDivisionError: division by zero (traceback: ")
    assert "Traceback" in Path(err.strip().rsplit(": ", 1)[1].rstrip(")")).read_text()


def test_a_kept_run_with_several_machines_is_entered_by_machine() -> None:
    login = {"user": "lab", "port": 1, "key": "k", "host_key": ""}
    single = RunResult("ab12", "s", "lab-bookworm", {}, "/runs/x", ssh=login)
    assert _logins(single, None) == {"lab-ab12": login}
    with pytest.raises(UsageError, match="has one machine"):
        _logins(single, "host2")
    several = dataclasses.replace(single, machines={"host1": login, "host2": {**login, "port": 2}})
    assert list(_logins(several, None)) == ["lab-ab12-host1", "lab-ab12-host2"]
    assert _logins(several, "host2") == {"lab-ab12-host2": {**login, "port": 2}}
    with pytest.raises(UsageError, match="no machine 'db' \\(machines: host1, host2\\)"):
        _logins(several, "db")
