"""result.json through its one type: written and read back whole, an older record read, a file that is none
refused in one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lab.base.errors import UsageError
from lab.run.record import SCHEMA, Boot, Health, RunResult, find_run_dir


def _result() -> RunResult:
    return RunResult("ab12cd34", "smoke", "lab-bookworm", {"reboots": 1}, "/runs/x", status="passed",
                     start="warm", boots=[Boot("vm1", "b1", 3.2, {"kernel": 1.0}), Boot("vm1", "b2", 40.5)],
                     health=Health(expected=[{"description": "oops", "line": "x"}]),
                     steps=[{"name": "s", "status": "passed"}])


def test_a_record_round_trips(tmp_path: Path) -> None:
    _result().write(tmp_path)
    assert RunResult.load(tmp_path / "result.json") == _result()
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "result.json").read_text())["schema"] == SCHEMA


def test_every_boot_of_every_host_has_its_boot_id(tmp_path: Path) -> None:
    _result().write(tmp_path)
    boots = json.loads((tmp_path / "result.json").read_text())["boots"]
    assert [(b["host"], b["boot_id"]) for b in boots] == [("vm1", "b1"), ("vm1", "b2")]


def test_an_older_record_is_read_and_a_foreign_file_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"run_id": "ab", "scenario": "smoke", "image": "lab-bookworm", "params": {},
                               "artifacts": "/r", "status": "passed", "health": {"unexpected": [], "expected": []},
                               "some_key_of_tomorrow": 1}))
    record = RunResult.load(old)
    assert (record.schema, record.status, record.boots) == (1, "passed", [])
    for text in ("[1]", "not json", '{"run_id": 5}', '{"params": []}'):
        old.write_text(text)
        with pytest.raises(UsageError, match=r"old\.json"):
            RunResult.load(old)


@pytest.mark.parametrize("field", [
    {"steps": [{"name": "s", "status": "passed", "console": {"console.log": "12"}}]},
    {"steps": [{"name": "s", "status": "passed", "start": "soon"}]},
    {"steps": ["s"]},
    {"events": [{"host": "vm1", "at": 1.0}]},
    {"samples": {"pool": {"command": "lvs", "every": 1, "points": [[1, 2]], "events": []}}},
    {"samples": {"pool": {"command": "lvs", "every": 1, "points": [{"at": "1", "value": 2}], "events": []}}},
    {"boots": [{"host": "vm1", "boot_id": "b", "ready": 1.0, "marks": {"kernel": "x"}}]},
    {"boots": [{"host": "vm1", "boot_id": "b", "ready": 1.0, "evil": 1}]},
    {"phases": {"boot": None}},
    {"wall_seconds": "1"},
    {"stand_ins": [1]},
])
def test_a_record_someone_else_made_is_checked_field_by_field(tmp_path: Path, field: dict[str, object]) -> None:
    """A bundle's result.json is read by the report: every value it reads has its type, or one line says which."""
    crafted = tmp_path / "result.json"
    crafted.write_text(json.dumps({"run_id": "ab", "scenario": "smoke", "image": "x", "params": {}, "artifacts": "",
                                   **field}))
    with pytest.raises(UsageError, match=r"result\.json: not a run's result") as refused:
        RunResult.load(crafted)
    assert "\n" not in str(refused.value)


def test_the_newest_directory_of_a_run(tmp_path: Path) -> None:
    for stamp in ("20261201T000000Z-smoke", "20261202T000000Z-smoke"):
        (tmp_path / stamp).mkdir()
        _result().write(tmp_path / stamp)
    newest = find_run_dir(tmp_path, "ab12cd34")
    assert newest == tmp_path / "20261202T000000Z-smoke"
