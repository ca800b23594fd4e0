"""What the lab stands in for is declared, shown and labelled: a scenario names each stand-in, `lab list` and
the run record carry them, and evidence a stand-in wrote says so in its first line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.base.artifacts import RunDir
from lab.base.errors import UsageError
from lab.base.log import Log
from lab.context import ScenarioContext
from lab.doors import cli
from lab.image.store import Profile
from lab.scenario import StandIn, declare


def test_a_stand_in_says_what_it_does_and_does_not() -> None:
    with pytest.raises(ValueError, match="what it does and what it does not"):
        declare("x", "a scenario", lambda lab: None, stand_ins=(StandIn("flannel", "leases subnets", ""),))
    flannel = StandIn("flannel", "leases subnets", "route between hosts")
    assert flannel.line() == "flannel: the lab's stand-in leases subnets; it does not route between hosts"


def test_evidence_a_stand_in_wrote_is_labelled(tmp_path: Path) -> None:
    ctx = ScenarioContext({}, {}, RunDir(tmp_path, "x"), Log(terminal=False), Profile(), ("flannel",))
    ctx.evidence("leases.json", "{}\n", stand_in="flannel")
    ctx.evidence("journal.txt", "real\n")
    evidence = ctx.run_dir.evidence_dir
    assert (evidence / "leases.json").read_text().startswith("# written by the lab's stand-in for flannel")
    assert (evidence / "journal.txt").read_text() == "real\n"
    assert ctx.facts["stand_in_evidence"] == {"leases.json": "flannel"}
    with pytest.raises(UsageError, match="no stand-in this scenario declares"):
        ctx.evidence("x.txt", "", stand_in="etcd")


def test_lab_list_shows_the_stand_ins(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert listed["system-containers"].endswith("[stand-ins: atomic install, flannel]")
    assert "stand-ins" not in listed["smoke"]
    assert cli.main(["list", "--json"]) == 0
    stand_ins = {s["name"]: s["stand_ins"] for s in json.loads(capsys.readouterr().out)}
    assert [s["component"] for s in stand_ins["partition-v1"]] == ["lab-lvm-activate.service",
                                                                    "lab-srv-inactive.service"]


def test_lab_list_keeps_every_row_in_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The longest name (pool-inactive-at-boot) no longer pushes its description out of the column."""
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    starts = {len(line) - len(line.split(" ", 1)[1].lstrip()) for line in lines}
    assert len(starts) == 1, starts
