"""Crafted sos reports, as an attacker or a damaged host would hand them over: each is refused by `lab replay`
in one line with exit 2 before any guest boots, no traceback, and nothing is written outside the run's own
directories. No hypervisor needed."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.base import archives
from lab.base.errors import UsageError
from lab.doors import cli
from lab.replay.plan import plan
from lab.replay.replay import Row, render
from lab.replay.sosreport import read

SOS = Path(__file__).parent / "data" / "sosreport-lab-atomic"
LVS = next((SOS / "sos_commands" / "lvm2").glob("lvs_*")).relative_to(SOS).as_posix()
VGS = next((SOS / "sos_commands" / "lvm2").glob("vgs_*")).relative_to(SOS).as_posix()
PVS = next((SOS / "sos_commands" / "lvm2").glob("pvs_*")).relative_to(SOS).as_posix()
MOUNT, LSBLK, UNAME = "sos_commands/filesys/mount_-l", "sos_commands/block/lsblk", "sos_commands/kernel/uname_-a"
DMSETUP = "sos_commands/devicemapper/dmsetup_table"


@pytest.fixture
def sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory that must stay empty: the reports' parent, the temporary directory and the lab's own
    directories all live elsewhere under tmp_path; no guest may boot."""
    for name in ("tmp", "runs", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))

    def no_boot(*args: object, **kwargs: object) -> int:
        raise AssertionError("a guest would boot for a report that should have been refused")

    monkeypatch.setattr(cli, "run_with_reruns", no_boot)
    (tmp_path / "sentinel").mkdir()
    return tmp_path / "sentinel"


def edited(where: Path, *edits: tuple[str, str, str]) -> Path:
    """The test report copied to `where`/report with each (file, old, new) replaced."""
    report = where / "report"
    shutil.copytree(SOS, report)
    for name, old, new in edits:
        path = report / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new))
    return report


def packed(directory: Path, out: Path, extra: Callable[[tarfile.TarFile], None] | None = None) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(directory, arcname="sosreport-vm1-2026-12-01-abcdefg")
        if extra:
            extra(tar)
    return out


def refused(capsys: pytest.CaptureFixture[str], sentinel: Path, path: Path, *args: str) -> str:
    """`lab replay PATH` exits 2 with one line; nothing appeared in the sentinel or the temporary directory."""
    rc = cli.main(["replay", str(path), *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lab: ") and "Traceback" not in err, err
    assert "internal error" not in err, err
    assert list(sentinel.iterdir()) == [] or (path.parent == sentinel and set(sentinel.iterdir()) <= {path})
    assert list((sentinel.parent / "tmp").iterdir()) == []
    return err


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"x\n", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


# --- archives that try to write outside -------------------------------------------------------------------


def test_a_member_that_climbs_out_is_refused(tmp_path: Path, sentinel: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    archive = packed(edited(tmp_path), sentinel / "a.tgz", lambda t: _member(t, "../../sentinel/evil"))
    assert "climbs out" in refused(capsys, sentinel, archive)


def test_an_absolute_member_is_refused(tmp_path: Path, sentinel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = packed(edited(tmp_path), sentinel / "a.tgz", lambda t: _member(t, f"{sentinel}/evil"))
    assert "absolute" in refused(capsys, sentinel, archive)


def test_links_that_look_safe_one_by_one_create_nothing(tmp_path: Path, sentinel: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The 3.11.2 bypass: `sos/l1 -> ..` then `up -> sos/l1/..` then a file through `up`; and the 3.11.7
    one (CVE-2025-4517): a path too long for the data filter to resolve. Links are never created."""
    def chain(tar: tarfile.TarFile) -> None:
        _member(tar, "sos/l1", type=tarfile.SYMTYPE, linkname="..")
        _member(tar, "up", type=tarfile.SYMTYPE, linkname="sos/l1/..")
        _member(tar, "up/sos_commands/evil")
        deep = "/".join(["d" * 247] * 16)
        _member(tar, f"{deep}/l", type=tarfile.SYMTYPE, linkname="../" * 17)
        _member(tar, f"{deep}/l/sentinel/evil")

    with tarfile.open(sentinel / "a.tgz", "w:gz") as tar:
        chain(tar)
    assert "not an sos report" in refused(capsys, sentinel, sentinel / "a.tgz")


def test_a_bomb_is_refused_before_it_is_unpacked(tmp_path: Path, sentinel: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def zeros(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("sosreport-x/var/log/huge")
        info.size = 256 << 20
        tar.addfile(info, _Zeros(info.size))

    archive = packed(edited(tmp_path), sentinel / "a.tgz", zeros)
    assert archive.stat().st_size < 1 << 20
    assert "unpacks to more than" in refused(capsys, sentinel, archive)


def test_a_damaged_archive_is_one_line(tmp_path: Path, sentinel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = packed(edited(tmp_path), tmp_path / "whole.tgz")
    (sentinel / "cut.tgz").write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert "not a readable archive" in refused(capsys, sentinel, sentinel / "cut.tgz")


def test_a_member_given_twice_is_refused(tmp_path: Path, sentinel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = packed(edited(tmp_path), sentinel / "a.tgz",
                     lambda t: _member(t, f"sosreport-vm1-2026-12-01-abcdefg/{UNAME}"))
    assert "cannot be placed" in refused(capsys, sentinel, archive)


def test_only_regular_files_are_created_and_links_are_not_followed(tmp_path: Path) -> None:
    """A link, device or fifo at a path the reader wants is not created; in a directory, not followed."""
    secret = tmp_path / "config.json"
    secret.write_text('{"auths": {"registry": {"auth": "c2VjcmV0"}}}')
    report = edited(tmp_path)
    (report / "etc" / "docker").mkdir()
    (report / "etc" / "docker" / "daemon.json").symlink_to(secret)
    assert read(report).docker_daemon == {}

    def specials(tar: tarfile.TarFile) -> None:
        top = "sosreport-vm1-2026-12-01-abcdefg"
        _member(tar, f"{top}/etc/containers/storage.conf", type=tarfile.LNKTYPE, linkname=str(secret))
        _member(tar, f"{top}/etc/docker/daemon.json", type=tarfile.SYMTYPE, linkname=str(secret))
        _member(tar, f"{top}/sos_commands/xfs/xfs_info_x", type=tarfile.FIFOTYPE)
        _member(tar, f"{top}/sos_commands/xfs/xfs_info_y", type=tarfile.CHRTYPE, devmajor=1, devminor=3)

    shutil.rmtree(report / "etc" / "docker")
    layout = read(packed(report, tmp_path / "a.tgz", specials))
    assert (layout.docker_daemon, layout.containers_storage) == ({}, "")


def test_limits_on_entries_and_bytes(tmp_path: Path) -> None:
    report = edited(tmp_path)
    with pytest.raises(UsageError, match="more than 5 entries"), \
            archives.extracted(report, lambda _: True, "t-", archives.Limits(members=5)):
        pass
    with pytest.raises(UsageError, match="over the 0 MiB"), \
            archives.extracted(report, lambda _: True, "t-", archives.Limits(member=100)):
        pass


# --- values that break their grammar ---------------------------------------------------------------------

HOSTILE = [
    ("a mount point with a command", (MOUNT, "/srv/old type", "/srv/old;touch${IFS}/PWNED type"), "mount point"),
    ("a mount point with a pipe", (MOUNT, "/srv/old type", "/srv/o|d type"), "mount point"),
    ("a mount point that climbs", (MOUNT, "/srv/old type", "/srv/../old type"), "normalised"),
    ("an LV with a command", (LVS, "  old  ", "  ol;d "), "LV"),
    ("a VG with a command", (VGS, "  srv      wz", "  s;reboot wz"), "VG"),
    ("a size of letters", (VGS, "15.49g", "abcdef"), "not a size"),
    ("a negative size", (VGS, "15.49g", "-1.00g"), "not a size"),
    ("a zero disk", (LSBLK, "   10G  0 disk", "    0G  0 disk"), "above 0"),
    ("a 400-digit size", (VGS, "15.49g", "9" * 400 + "g"), ""),  # shifts the columns: refused all the same
    ("a 99 PiB disk", (LSBLK, "   10G  0 disk", "   99P  0 disk"), "1 PiB"),
    ("a Data% of letters", (LVS, "61.99", "abc  "), "Data%"),
    ("a Data% of nan", (LVS, "61.99", "nan  "), "Data%"),
    ("a Data% over 100", (LVS, "61.99", "161.9"), "Data%"),
    ("a chunk of letters", (DMSETUP, " 1024 ", " zz "), "chunk"),
    ("a negative chunk", (DMSETUP, " 1024 ", " -1024 "), "chunk"),
    ("no sos_commands", None, "not an sos report"),
]


@pytest.mark.parametrize(("what", "edit", "said"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_values_that_break_their_grammar_are_refused(tmp_path: Path, sentinel: Path,
                                                     capsys: pytest.CaptureFixture[str], what: str,
                                                     edit: tuple[str, str, str] | None, said: str) -> None:
    report = edited(tmp_path, edit) if edit else tmp_path / "empty"
    if edit is None:
        report.mkdir()
        (report / "notes.txt").write_text("not a report\n")
    assert said in refused(capsys, sentinel, report), what


@pytest.mark.parametrize("scale", ["nan", "inf", "0", "-1", "1.5", "2.2e-313"])
def test_a_scale_outside_0_1_is_refused(tmp_path: Path, sentinel: Path, capsys: pytest.CaptureFixture[str],
                                        scale: str) -> None:
    assert "--scale" in refused(capsys, sentinel, edited(tmp_path), "--scale", scale)


def test_a_huge_host_at_scale_1_is_refused_not_planned(tmp_path: Path, sentinel: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    report = edited(tmp_path, (LSBLK, "vdd                               254:48   0    2G",
                               "vdd                               254:48   0    9T"))
    assert "a replay may use" in refused(capsys, sentinel, report, "--scale", "1")


def test_an_empty_uname_and_a_tarball_at_the_top(tmp_path: Path, sentinel: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    report = edited(tmp_path)
    (report / UNAME).write_text("")
    assert read(report).hostname == "?"
    nested = packed(report, tmp_path / "inner.tar.gz")
    with tarfile.open(sentinel / "outer.tgz", "w:gz") as tar:
        tar.add(nested, arcname="inner.tar.gz")
    assert "not an sos report" in refused(capsys, sentinel, sentinel / "outer.tgz")


# --- what is not refused is explained, shown safely and quoted ---------------------------------------------


def test_a_pv_on_no_listed_disk_is_not_replayed_and_said_so(tmp_path: Path) -> None:
    """LUKS, loop and multipath PVs, or a PV that lsblk names otherwise: its VG is listed as not replayed."""
    layout = read(edited(tmp_path, (PVS, "/dev/vdd  ", "/dev/x;hlt")))
    assert "srv" not in {vg.name for vg in layout.vgs}
    the_plan = plan(layout)
    assert not any("hlt" in command or "srv" in command for command in the_plan.commands)
    assert any("VG srv: its PV 'x;hlt' is no disk" in note for note in the_plan.notes)
    assert any("/srv/old" in note and "not replayed" in note for note in the_plan.notes)


def test_terminal_escapes_and_pipes_are_shown_harmlessly(tmp_path: Path) -> None:
    report = edited(tmp_path, (UNAME, "vm1", "vm1\x1b]0;owned\x07"))
    layout = read(report)
    assert "\x1b" not in layout.hostname and "\x07" not in layout.hostname
    table = render(layout, plan(layout), [])
    assert "\x1b" not in table
    rows = [Row("/srv/o|d", "mount", "/dev/srv/old xfs", "not mounted", False)]
    assert "| /srv/o\\|d | mount |" in render(layout, plan(layout), rows)


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read in pieces (a bomb without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def test_without_insights_core_replay_says_what_to_install(sentinel: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """insights-core is the replay extra: a plain install is told, in one line, what to add."""
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None if name == "insights" else object())
    assert "pip install 'atomic-lab[replay]'" in refused(capsys, sentinel, SOS)


def test_docker_settings_that_are_no_settings_are_listed_not_replayed(tmp_path: Path) -> None:
    """Unbalanced quotes in docker-storage and a daemon.json that is no JSON object: said, never a traceback,
    never a command."""
    quote = ("etc/sysconfig/docker-storage", 'DOCKER_STORAGE_OPTIONS="', "DOCKER_STORAGE_OPTIONS=\"'")
    report = edited(tmp_path, quote)
    (report / "etc" / "docker").mkdir()
    (report / "etc" / "docker" / "daemon.json").write_text("[1, 2]\n")
    layout = read(report)
    assert (layout.docker_storage, layout.docker_daemon) == ([], {})
    assert "/etc/sysconfig/docker-storage: unbalanced quotes, not replayed" in plan(layout).notes
