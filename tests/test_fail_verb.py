"""`fail` passes only on the failure the step names (an exit code, or text the output holds): a bare failure
of any kind could not tell the field's error from a typo."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.base.errors import CommandFailed
from lab.machine.shell import GuestShell
from lab.machine.ssh import CommandResult


def _guest(rc: int, stdout: str = "", stderr: str = "") -> SimpleNamespace:
    def execute(command: str, **kwargs: object) -> CommandResult:
        return CommandResult(command, rc, stdout, stderr, 0.1)

    return SimpleNamespace(name="vm1", execute=execute)


def test_the_named_failure_passes() -> None:
    read_only = _guest(1, stderr="touch: cannot touch '/usr/x': Read-only file system\n")
    assert "Read-only" in GuestShell.fail(read_only, "touch /usr/x", "Read-only file system")  # type: ignore[arg-type]
    assert GuestShell.fail(_guest(1), "command -v fuse-overlayfs", 1) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize(("guest", "expect", "said"), [
    (_guest(0, "ok\n"), "Read-only file system", "expected a failure saying 'Read-only file system'"),
    (_guest(1, stderr="touch: cannot touch: Permission denied\n"), "Read-only file system", "exited 1"),
    (_guest(127, stderr="bash: nope: command not found\n"), 1, "exited 127, expected exit code 1"),
])
def test_any_other_outcome_fails_the_step(guest: SimpleNamespace, expect: str | int, said: str) -> None:
    with pytest.raises(CommandFailed, match=said):
        GuestShell.fail(guest, "cmd", expect)  # type: ignore[arg-type]
