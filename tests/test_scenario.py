from pathlib import Path

import pytest

from lab.base.config import REPO_ROOT
from lab.base.errors import UsageError
from lab.scenario import Disk, Node, Registry, parse_size, scenario


def _declare(**kwargs: object):  # type: ignore[no-untyped-def]
    def body(lab: object) -> None: ...

    args: dict[str, object] = {"name": "demo", "description": "a demo"} | kwargs
    return scenario(**args)(body).__lab_scenario__  # type: ignore[arg-type]


def test_parse_size() -> None:
    assert parse_size("1G") == 1 << 30
    assert parse_size("512M") == 512 << 20
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError):
        parse_size("1.5G")


def test_sets_convert_to_the_default_type() -> None:
    item = _declare(params={"size": 1024, "mode": "queue", "fast": False, "ratio": 0.5})
    assert item.parse_sets(["size=2048", "fast=yes", "ratio=2", "mode=error"]) == {
        "size": 2048, "mode": "error", "fast": True, "ratio": 2.0}
    assert item.parse_sets([]) == {"size": 1024, "mode": "queue", "fast": False, "ratio": 0.5}


def test_choices_are_checked_before_any_vm_starts() -> None:
    item = _declare(params={"mode": "queue"}, choices={"mode": ("queue", "error")})
    assert item.parse_sets(["mode=error"]) == {"mode": "error"}
    with pytest.raises(UsageError, match="expected one of queue, error"):
        item.parse_sets(["mode=fast"])


@pytest.mark.parametrize(("sets", "message"), [
    (["size"], "expected KEY=VALUE"),
    (["colour=red"], "has no parameter 'colour'"),
    (["size=big"], "size=big"),
    (["fast=maybe"], "expected true or false"),
])
def test_bad_sets_are_usage_errors(sets: list[str], message: str) -> None:
    item = _declare(params={"size": 1024, "fast": False})
    with pytest.raises(UsageError, match=message):
        item.parse_sets(sets)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Bad_Name"}, "lower-case"),
    ({"description": ""}, "description"),
    ({"tags": ("storage", "Fast one")}, "tags must be lowercase words"),
    ({"disks": (Disk("1G", "a"), Disk("2G", "a"))}, "serials must be unique"),
    ({"disks": (Disk("lots", "a"),)}, "bad size"),
    ({"machines": {"host-1": Node()}}, "short host names"),
    ({"machines": {"h1": Node()}, "disks": (Disk("1G", "a"),)}, "give each its disks"),
    ({"shared_disks": (Disk("1G", "s"),)}, "needs machines"),
    ({"machines": {"h1": Node(disks=(Disk("1G", "s"),))}, "shared_disks": (Disk("1G", "s"),)}, "unique \\(h1\\)"),
    ({"machines": {"h1": Node(disks=(Disk("huge", "a"),))}}, "bad size"),
])
def test_bad_declarations_fail_at_import(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _declare(**kwargs)


def test_registry_rejects_duplicate_names(tmp_path: Path) -> None:
    body = ('from lab.scenario import scenario\n'
            '@scenario("twin", "first")\ndef a(lab): ...\n'
            '@scenario("twin", "second")\ndef b(lab): ...\n')
    (tmp_path / "twins.py").write_text(body)
    with pytest.raises(ValueError, match=r"duplicate scenario name 'twin'"):
        Registry.load((tmp_path,))


def test_the_shipped_registry_loads_and_unknown_names_list_the_valid_ones() -> None:
    registry = Registry.load((REPO_ROOT / "scenarios",))
    assert "smoke" in registry.names()
    smoke = registry.get("smoke")
    assert [d.serial for d in smoke.disks] == ["data1", "data2"]
    with pytest.raises(UsageError, match=r"valid names: .*smoke"):
        registry.get("no-such-thing")


def test_a_scenario_without_machines_has_one_named_vm1_with_its_disks() -> None:
    single = _declare(disks=(Disk("1G", "a"),), memory=512)
    assert single.nodes() == {"vm1": Node(disks=(Disk("1G", "a"),), memory=512)}
    several = _declare(machines={"host1": Node(disks=[Disk("1G", "a")]), "host2": Node(memory=2048)})
    assert list(several.nodes()) == ["host1", "host2"]
    assert several.nodes()["host1"].disks == (Disk("1G", "a"),)  # a list declared, a tuple kept
