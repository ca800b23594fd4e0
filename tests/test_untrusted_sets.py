"""--set values reach guest shells: each is checked against its parameter's type before anything boots
(one line, exit 2). No hypervisor needed."""

from __future__ import annotations

import json

import pytest

from lab.doors import cli


@pytest.fixture(autouse=True)
def boots(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> list[object]:
    """The runs that would have booted (none does)."""
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    started: list[object] = []
    monkeypatch.setattr(cli, "run_with_reruns", lambda config, request, log, reruns, **_: started.append(request) or 0)
    return started


@pytest.mark.parametrize(("scenario", "value"), [
    ("partition-v1", "data_size=40%FREE;touch /PWNED"),
    ("partition-v1", "data_size=$(reboot)"),
    ("partition-v1", "root_size=4G;id"),
    ("flannel-two-hosts", "network=10.40.0.0/16'"),
    ("flannel-two-hosts", "network=10.40.0.0/16 10.0.0.0/8"),
    ("thinpool-full", "no_space_timeout=nan"),
])
def test_a_value_a_shell_would_read_as_more_is_refused(capsys: pytest.CaptureFixture[str], boots: list[object],
                                                       scenario: str, value: str) -> None:
    assert cli.main(["run", scenario, "--set", value]) == 2
    assert boots == []
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"lab: --set {value}: "), err


@pytest.mark.parametrize(("scenario", "value"), [("partition-v1", "data_size=90%FREE"),
                                                 ("partition-v1", "data_size=2G"),
                                                 ("flannel-two-hosts", "network=10.50.0.0/16")])
def test_values_of_the_parameters_type_pass(boots: list[object], scenario: str, value: str) -> None:
    assert cli.main(["run", scenario, "--set", value]) == 0 and len(boots) == 1


def test_a_pool_size_takes_extents_where_the_pool_does(boots: list[object]) -> None:
    """thinpool-full hands pool_size to create_thin_pool, which takes extents: its type says so."""
    assert cli.main(["run", "thinpool-full", "--set", "pool_size=90%FREE"]) == 0 and len(boots) == 1
    assert cli.main(["run", "thinpool-full", "--set", "thin_size=90%FREE"]) == 2  # lvcreate -V takes no extents


def test_each_parameter_says_what_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["run", "thinpool-full", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--set pool_size=...          a size (512M, 2G) or extents (40%FREE, 90%VG); default 1G" in out
    assert cli.main(["list", "--json"]) == 0
    listed = {s["name"]: s["params"] for s in json.loads(capsys.readouterr().out)}
    assert listed["partition-v1"]["pv_event"] == {"default": "seen", "type": "choice",
                                                  "takes": "one of seen, lost, lost-unrecovered"}
