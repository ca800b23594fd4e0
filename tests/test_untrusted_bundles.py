"""Crafted bundles, as a colleague's machine or an attacker could hand them over: `lab rerun` refuses each in
one line with exit 2 before its code runs or a guest boots, and never writes outside its own directories; a
bundle's code runs only with --trust. No hypervisor needed."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.base.config import Config
from lab.doors import cli
from lab.run import bundle
from lab.scenario import load_file

HERE = Path(__file__).parent
RUN = "20261201T000000.000000Z-require-verbs"


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's directories under tmp_path; a guest that would boot fails the test; `sentinel` must stay
    empty."""
    for name in ("runs", "tmp", "sentinel"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LAB_SCENARIOS_DIR", str(HERE / "scenarios"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)

    def no_boot(*args: object, **kwargs: object) -> int:
        raise AssertionError("a guest would boot for a bundle that should have been refused")

    monkeypatch.setattr(cli, "run_with_reruns", no_boot)
    return tmp_path


def _bundle(tmp_path: Path, change: Callable[[Path], None] = lambda run_dir: None) -> Path:
    """A bundle of a recorded run of tests/scenarios/health.py's require-verbs, changed by `change`."""
    config = dataclasses.replace(Config.from_env(), scenarios_dirs=(HERE / "scenarios",))
    run_dir = tmp_path / "made" / RUN
    run_dir.mkdir(parents=True)
    scenario = next(s for s in load_file(HERE / "scenarios" / "health.py") if s.name == "require-verbs")
    bundle.record(run_dir, scenario, "lab-bookworm", config)
    (run_dir / "result.json").write_text('{"run_id": "r1", "params": {}, "image": "lab-bookworm"}\n')
    change(run_dir)
    out = tmp_path / "sentinel" / "bundle.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(run_dir, arcname=RUN)
    return out


def _refused(capsys: pytest.CaptureFixture[str], lab_env: Path, *args: str) -> str:
    rc = cli.main(["rerun", *args])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    err = captured.err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lab: ") and "internal error" not in err, err
    assert [p.name for p in (lab_env / "sentinel").iterdir()] == ["bundle.tar.gz"]
    assert list((lab_env / "tmp").iterdir()) == []
    return err


def _edit(name: str, old: str, new: str) -> Callable[[Path], None]:
    def change(run_dir: Path) -> None:
        path = run_dir / name
        path.write_text(path.read_text().replace(old, new))
    return change


def test_a_bundle_is_code_and_runs_only_when_trusted(lab_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --trust (and no terminal to say yes at), the bundle's source is never imported."""
    planted = lab_env / "sentinel" / "imported"
    archive = _bundle(lab_env, _edit("source/health.py", "from __future__ import annotations",
                                     f"from __future__ import annotations\nopen({str(planted)!r}, 'w').close()"))
    assert "a bundle is code" in _refused(capsys, lab_env, str(archive))
    assert not planted.exists()


def test_a_source_changed_after_its_run_is_called_out(lab_env: Path) -> None:
    archive = _bundle(lab_env, _edit("source/health.py", '"/run/lab-there"', '"/run/x"'))
    config = dataclasses.replace(Config.from_env(), scenarios_dirs=(HERE / "scenarios",))
    with bundle.opened(archive) as run_dir:
        lines = bundle.differences(run_dir, config)
    assert lines[0].startswith("the bundle's health.py is not the file its run used")


def _bundle_with(lab_env: Path, name: str) -> Path:
    archive = _bundle(lab_env)
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        extra = tarfile.TarInfo(name)
        extra.size = 1
        tar.addfile(extra, io.BytesIO(b"x"))
    return archive


@pytest.mark.parametrize("name", ["../../sentinel/evil", "/tmp/evil", f"{RUN}/source/../../../evil"])
def test_a_member_outside_is_refused(lab_env: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert "refusing it" in _refused(capsys, lab_env, str(_bundle_with(lab_env, name)), "--trust")


def _provenance(**changes: str) -> Callable[[Path], None]:
    def change(run_dir: Path) -> None:
        facts = json.loads((run_dir / "provenance.json").read_text())
        (run_dir / "provenance.json").write_text(json.dumps({**facts, **changes}))
    return change


def _result(**changes: object) -> Callable[[Path], None]:
    def change(run_dir: Path) -> None:
        (run_dir / "result.json").write_text(json.dumps({"params": {}, "image": "lab-bookworm", **changes}))
    return change


CRAFTED = [
    ("a source naming a host file", _provenance(source="../../../etc/passwd"), "source"),
    ("a scenario name with a command", _provenance(scenario="x;reboot"), "scenario"),
    ("a recipe writing outside its root", _edit("image/lab-bookworm.toml", "[build.files]",
                                                '[build.files]\n"/../../../../sentinel/x" = "owned"'), "normalised"),
    ("a recipe reading beside the lab", _edit("image/lab-bookworm.toml", 'overlay = "guest"',
                                              'overlay = "../../../sentinel"'), "beside the recipe"),
    ("a parameter the scenario has not", _result(params={"nope": "1"}), "no parameter"),
    ("an image that is a host path", _result(image="/var/lib/libvirt/images/other.qcow2"), "not a path"),
    ("no result", lambda run_dir: (run_dir / "result.json").unlink(), "result.json"),
    ("a result that is a list", lambda run_dir: (run_dir / "result.json").write_text("[1]"), "result.json"),
]


@pytest.mark.parametrize(("what", "change", "said"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_bundles_are_refused(lab_env: Path, capsys: pytest.CaptureFixture[str], what: str,
                                     change: Callable[[Path], None], said: str) -> None:
    assert said in _refused(capsys, lab_env, str(_bundle(lab_env, change)), "--trust"), what


def test_a_bundle_leaves_out_keys_and_says_what_it_packs(lab_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = lab_env / "runs" / RUN
    shutil.copytree(HERE / "scenarios", run_dir / "source")
    (run_dir / "provenance.json").write_text("{}")
    (run_dir / "id_ed25519").write_text("a key, whatever its text\n")
    (run_dir / "notes.txt").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (run_dir / "result.json").write_text('{"run_id": "ab12cd34"}')
    assert cli.main(["bundle", "ab12cd34", "--list"]) == 0
    out = capsys.readouterr().out
    assert "packs  result.json" in out and "leaves id_ed25519 (a secret)" in out and "leaves notes.txt" in out


def _report(lab_env: Path, capsys: pytest.CaptureFixture[str],
            change: Callable[[Path], None]) -> tuple[int, str, str]:
    """`lab report` of a bundle of a real run's record (tests/data/reports/passed), changed by `change`."""
    run_dir = lab_env / "made" / RUN
    shutil.copytree(HERE / "data" / "reports" / "passed", run_dir)
    (run_dir / "provenance.json").write_text("{}")
    (run_dir / "evidence").mkdir()
    (run_dir / "evidence" / "lsblk.txt").write_text("vda 8G\n")
    (run_dir / "source").mkdir()
    (run_dir / "source" / "smoke.py").write_text("raise SystemExit('a report runs no code')\n")
    change(run_dir)
    out = lab_env / "sentinel" / "bundle.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for made in (lab_env / "made").iterdir():
            tar.add(made, arcname=made.name)
    rc = cli.main(["report", str(out)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_a_bundles_report_is_written_into_the_labs_own_directory(lab_env: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _report(lab_env, capsys, lambda run_dir: None)
    assert rc == 0, err
    page = Path(out.strip())
    assert page == lab_env / "runs" / "from-bundles" / RUN / "report.html"
    text = page.read_text()
    assert 'href="evidence/lsblk.txt"' in text and (page.parent / "evidence" / "lsblk.txt").is_file()
    assert not (page.parent / "source").exists()  # only what a report reads
    assert [p.name for p in (lab_env / "sentinel").iterdir()] == ["bundle.tar.gz"]
    assert list((lab_env / "tmp").iterdir()) == []


REPORT_CRAFTED = [
    ("a step whose start is text", _edit("result.json", '"start": ', '"start": "x", "was": '), "steps"),
    ("a sample with a point that is no point", _edit("result.json", '"samples": {}', '"samples": {"p": {"command": '
                                                     '"x", "every": 1, "points": [[1]], "events": []}}'), "samples"),
    ("no result", lambda run_dir: (run_dir / "result.json").unlink(), "result.json"),
    ("a run directory named otherwise", lambda run_dir: run_dir.rename(run_dir.with_name("x y")), "named"),
]


@pytest.mark.parametrize(("what", "change", "said"), REPORT_CRAFTED, ids=[c[0] for c in REPORT_CRAFTED])
def test_a_crafted_bundles_report_is_refused_in_one_line(lab_env: Path, capsys: pytest.CaptureFixture[str],
                                                         what: str, change: Callable[[Path], None],
                                                         said: str) -> None:
    rc, _, err = _report(lab_env, capsys, change)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and said in err, (what, err)
    assert not (lab_env / "runs" / "from-bundles").exists()
