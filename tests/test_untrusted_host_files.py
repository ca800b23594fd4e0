"""What the lab makes on the host is its user's alone: run directories 0700, transcripts 0600 from the moment
they exist, an internal error's traceback in a fresh private file no one can predict or plant a link at, and
the SSH port bound by QEMU in the same step it is chosen. No hypervisor needed."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

import libvirt_qemu
import pytest

from lab.base.artifacts import RunDir
from lab.base.errors import HarnessError
from lab.base.log import Log
from lab.doors import cli
from lab.virt.hypervisor import forwarded_ssh_port


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_run_directory_and_its_transcript_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run_dir = RunDir(tmp_path / "runs", "smoke")
        log = Log()
        log.open_transcript(run_dir.transcript)
        log.close()
    finally:
        os.umask(old)
    assert (_mode(run_dir.path), _mode(run_dir.transcript)) == (0o700, 0o600)


def test_an_internal_error_goes_to_a_private_unpredictable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"lab-error-{os.getpid()}.txt"
    planted.symlink_to(tmp_path / "victim")  # the name the lab once used, pointing where it must not write

    def broken(*args: object) -> int:
        raise RuntimeError("a lab bug")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "internal error: RuntimeError: a lab bug" in err
    trace = Path(re.search(r"traceback: (\S+)\)", err).group(1))  # type: ignore[union-attr]
    assert trace.parent == tmp_path / "runs" and _mode(trace) == 0o600 and "a lab bug" in trace.read_text()
    assert not (tmp_path / "victim").exists()


USERNET = """Hub -1 (labnet0):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[HOST_FORWARD]  14       127.0.0.1 39493       10.0.2.15    22     0     0
"""


def test_the_ssh_port_is_the_one_qemu_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab asks QEMU for port 0 and reads back the port it bound: no free-then-bind window in between."""
    monkeypatch.setattr(libvirt_qemu, "qemuMonitorCommand", lambda dom, command, flags: USERNET)
    assert forwarded_ssh_port(object()) == 39493  # type: ignore[arg-type]
    monkeypatch.setattr(libvirt_qemu, "qemuMonitorCommand", lambda dom, command, flags: "Hub -1 (labnet0):\n")
    with pytest.raises(HarnessError, match="forwards no port"):
        forwarded_ssh_port(object())  # type: ignore[arg-type]
