"""The pytest plugin: scenarios collected as scenario x image items with markers, and the `machine`
fixture giving a ten-line test a real guest (one passing reproduction, one failure that explains itself)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.doors import pytest_plugin
from lab.replay import replay

SCENARIOS = '''
from lab.scenario import Disk, scenario


@scenario("pool-thing", "A storage scenario", image="lab-atomic", tags=("storage", "slow"),
          disks=(Disk("1G", "pool"),))
def pool_thing(lab):
    pass


@scenario("engine-thing", "A containers scenario", tags=("containers",), params={"engine": "docker", "n": 2},
          choices={"engine": ("docker", "podman")})
def engine_thing(lab):
    pass


@scenario("user-thing", "A scenario with its user's own tag", tags=("mine",))
def user_thing(lab):
    pass
'''


@pytest.fixture
def scenarios(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = pytester.mkdir("scenarios")
    (directory / "things.py").write_text(SCENARIOS)
    monkeypatch.setenv("LAB_SCENARIOS_DIR", str(directory))
    return directory


def _collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest_inprocess("--collect-only", "-q", "scenarios", *args)
    return [line for line in result.outlines if "::" in line]


def test_every_scenario_is_an_item_per_image(pytester: pytest.Pytester, scenarios: Path) -> None:
    assert _collected(pytester) == ["scenarios/things.py::pool-thing[lab-atomic]",
                                    "scenarios/things.py::engine-thing[lab-bookworm]",
                                    "scenarios/things.py::user-thing[lab-bookworm]"]
    assert _collected(pytester, "--lab-image", "lab-ostree", "-m", "not mine") == [
        "scenarios/things.py::pool-thing[lab-atomic]", "scenarios/things.py::pool-thing[lab-ostree]",
        "scenarios/things.py::engine-thing[lab-bookworm]", "scenarios/things.py::engine-thing[lab-ostree]"]


def test_the_settings_are_read_once_a_session(pytester: pytest.Pytester, scenarios: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Collecting files and items reads pyproject.toml and the environment once, not per file or item."""
    for name in ("a", "b", "c"):
        (pytester.mkdir(f"more-{name}") / f"test_{name}.py").write_text("def test_x():\n    pass\n")
    calls: list[int] = []
    real = Config.from_env
    monkeypatch.setattr(Config, "from_env", classmethod(lambda cls: calls.append(1) or real()))
    result = pytester.runpytest_inprocess("--collect-only", "-q", "scenarios", "more-a", "more-b", "more-c")
    assert len([line for line in result.outlines if "::" in line]) == 6
    assert len(calls) == 1


def test_tags_are_markers_and_names_select(pytester: pytest.Pytester, scenarios: Path) -> None:
    assert _collected(pytester, "-m", "storage") == ["scenarios/things.py::pool-thing[lab-atomic]"]
    assert _collected(pytester, "-m", "vm and not slow and not mine") == [
        "scenarios/things.py::engine-thing[lab-bookworm]"]
    assert _collected(pytester, "-k", "engine and lab-bookworm") == ["scenarios/things.py::engine-thing[lab-bookworm]"]
    assert _collected(pytester, "--strict-markers", "-m", "mine") == ["scenarios/things.py::user-thing[lab-bookworm]"]


def test_lab_run_options_as_pytest_options(pytester: pytest.Pytester, scenarios: Path) -> None:
    """--lab-set goes to the scenarios that have the parameter (named in the item), --lab-variants makes an
    item of each other choice, --lab-shard takes a deterministic slice; a bad value fails before any boot."""
    assert [n for n in _collected(pytester, "--lab-set", "n=3", "--lab-variants") if "engine" in n] == [
        "scenarios/things.py::engine-thing[lab-bookworm,n=3]",
        "scenarios/things.py::engine-thing[lab-bookworm,n=3,engine=podman]"]
    assert "scenarios/things.py::pool-thing[lab-atomic]" in _collected(pytester, "--lab-set", "n=3")
    slices = [_collected(pytester, "--lab-shard", f"{k}/2") for k in (1, 2)]
    assert sorted(slices[0] + slices[1]) == sorted(_collected(pytester)) and not set(slices[0]) & set(slices[1])
    bad = pytester.runpytest_inprocess("--collect-only", "-q", "scenarios", "--lab-set", "n=many")
    assert "--set n=many: expected an integer" in bad.stdout.str()
    typo = pytester.runpytest_inprocess("--collect-only", "-q", "scenarios", "--lab-set", "nn=3")
    assert typo.ret == pytest.ExitCode.USAGE_ERROR
    assert "--lab-set nn: no collected scenario has a parameter 'nn'" in typo.stderr.str()


HOST_ON_ITS_OWN_VG = '''
import pytest

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.doors import pytest_plugin
from lab.replay import replay


@pytest.mark.lab(host={report!r}, image="lab-atomic")
def test_on_the_hosts_storage(machine):
    pass
'''


def test_a_report_on_an_image_with_its_vg_is_refused_by_both_doors(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """lab replay --image lab-atomic refuses an Atomic host's report (its VG atomicos is the image's root VG);
    @pytest.mark.lab(host=..., image="lab-atomic") refuses it the same way, before any boot."""
    report = Path(__file__).parent / "data" / "sosreport-lab-atomic"
    with pytest.raises(UsageError, match="has its root on VG atomicos"):
        replay.prepare(report, None, "lab-atomic", Config.from_env().images_dirs)
    monkeypatch.setattr(pytest_plugin, "_hypervisor_missing", lambda settings: "")
    monkeypatch.setattr(pytest_plugin, "_run", lambda *args: pytest.fail("a guest would boot"))
    monkeypatch.setattr(pytest_plugin, "prepare_images", lambda *args, **kwargs: None)  # no image is built
    pytester.makepyfile(test_host=HOST_ON_ITS_OWN_VG.format(report=str(report)))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*has its root on VG atomicos*"])


def test_files_outside_the_scenarios_directory_are_left_alone(pytester: pytest.Pytester, scenarios: Path) -> None:
    (pytester.mkdir("elsewhere") / "things.py").write_text(SCENARIOS)
    result = pytester.runpytest_inprocess("--collect-only", "-q", "elsewhere")
    assert not [line for line in result.outlines if "::" in line]


def test_external_images_not_imported_are_skipped_saying_how_to_get_them(
        pytester: pytest.Pytester, scenarios: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = pytester.mkdir("images")
    (images / "external").mkdir()
    (images / "external" / "ghost-host.toml").write_text(
        'name = "ghost-host"\ndescription = "An upstream image nobody imported"\n'
        '[source]\nfile = "ghost.qcow2"\nurl = "http://127.0.0.1:1/ghost.qcow2"\n')
    monkeypatch.setenv("LAB_IMAGES_DIR", str(images))
    result = pytester.runpytest_inprocess("scenarios", "--lab-external", "-k", "ghost-host", "-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*external image absent: image ghost-host is not imported: "
                                 "`lab images fetch ghost-host`*"])


VM_TESTS = '''
import pytest

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.doors import pytest_plugin
from lab.replay import replay


@pytest.mark.vm
def test_needs_a_guest():
    pass


@pytest.mark.vm
@pytest.mark.nightly
def test_only_at_night():
    pass
'''


def test_without_a_hypervisor_vm_tests_skip_but_fail_under_ci(pytester: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's own rule, so that any repository gets it (this checkout's conftest has none)."""
    pytester.makepyfile(test_vm=VM_TESTS)
    monkeypatch.setenv("LAB_LIBVIRT_URI", "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    monkeypatch.delenv("CI", raising=False)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(skipped=2)
    monkeypatch.setenv("CI", "1")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(errors=1, skipped=1)  # its setup fails; the nightly-only one may skip
    result.stdout.fnmatch_lines(["*VM test skipped under CI: *libvirt unreachable*"])


REPRODUCTION = '''
import pytest

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.doors import pytest_plugin
from lab.replay import replay
from lab.scenario import Disk


@pytest.mark.lab(disks=[Disk("1G", "scratch")], memory=768)
def test_overlay_warns_on_an_xfs_upper_without_d_type(machine):
    """overlayfs on xfs made with ftype=0 (field note: overlay-xfs)"""
    machine.succeed("mkfs.xfs -q -f -m crc=0 -n ftype=0 /dev/disk/by-id/virtio-scratch")
    machine.succeed("mkdir -p /x /lower /merged && mount /dev/disk/by-id/virtio-scratch /x && mkdir /x/up /x/work")
    machine.succeed("mount -t overlay overlay -o lowerdir=/lower,upperdir=/x/up,workdir=/x/work /merged")
    assert "upper fs needs to support d_type" in machine.succeed("dmesg")


@pytest.mark.lab(memory=768)
def test_a_wrong_expectation(machine):
    machine.succeed("echo field > /tmp/report")
    assert machine.succeed("cat /tmp/report").strip() == "lab"
'''


@pytest.mark.vm
def test_machine_fixture_runs_a_ten_line_reproduction(pytester: pytest.Pytester, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_reproduction=REPRODUCTION)
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml", str(tmp_path / "junit.xml"),
                                           "--lab-report", str(tmp_path / "report"), timeout=1200)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: assert 'field' == 'lab'*"])  # the E line: CI or not, never cut

    cases = {c.get("name"): c for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    failed = cases["test_a_wrong_expectation"]
    props = {p.get("name"): p.get("value") for p in failed.iter("property")}
    result_json = json.loads((Path(str(props["artifacts"])) / "result.json").read_text())
    assert result_json["status"] == "failed" and "'field' == 'lab'" in result_json["failure"]
    assert (Path(str(props["artifacts"])) / "evidence" / "failure").is_dir(), "no failure evidence collected"

    summary = json.loads((tmp_path / "report" / "summary.json").read_text())["runs"]
    assert sorted((r["scenario"], r["status"]) for r in summary) == [
        ("test-a-wrong-expectation", "failed"), ("test-overlay-warns-on-an-xfs-upper-without-d-type", "passed")]


def test_lab_run_flags_reach_the_run(pytester: pytest.Pytester) -> None:
    """--lab-keep, --lab-keep-on-failure, --lab-sit and --lab-cold become the run's request, as lab run's flags do."""
    from lab.doors.pytest_plugin import _request
    from lab.scenario import declare

    spec = declare("t", "a test", lambda lab: None)
    plain = _request(pytester.parseconfig(), spec, {}, None)
    assert not (plain.keep or plain.keep_on_failure or plain.sit or plain.cold)
    flagged = _request(pytester.parseconfig("--lab-keep", "--lab-keep-on-failure", "--lab-sit", "--lab-cold"),
                       spec, {"n": 1}, "lab-atomic")
    assert (flagged.keep, flagged.keep_on_failure, flagged.sit, flagged.cold) == (True, True, True, True)
    assert (flagged.params, flagged.image) == ({"n": 1}, "lab-atomic")


def test_longest_first_deals_the_long_tests_out_to_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """xdist's worksteal gives each worker a contiguous share of the list: each share starts with long ones."""
    from lab.doors import pytest_plugin

    cost = {"ostree": 1800, "containers": 1200, "partition": 1000, "overlay": 900, "unit1": 0, "unit2": 0}
    monkeypatch.setattr(pytest_plugin, "_cost", cost.__getitem__)
    dealt = pytest_plugin._longest_first(list(cost), 2)  # type: ignore[arg-type]
    assert dealt[:3] == ["ostree", "partition", "unit1"] and dealt[3:] == ["containers", "overlay", "unit2"]
    assert pytest_plugin._longest_first(list(cost), 1) == list(cost)  # type: ignore[arg-type]
