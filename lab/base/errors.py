"""The lab's exceptions: what went wrong, and whose fault it was.

`ScenarioFailed` means the system under test misbehaved (exit 1); a
`HarnessError` means the lab could not do its job (exit 2); a `UsageError`
is bad input from the user (exit 2, one line, no traceback).
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every error the lab raises on purpose."""

    exit_code = 2


class UsageError(LabError):
    """Bad input: unknown scenario, bad --set, missing image, ..."""


class HarnessError(LabError):
    """The lab itself could not do what a run needs."""


class LibvirtUnavailable(HarnessError):
    pass


class ImageError(HarnessError):
    pass


class BootTimeout(HarnessError):
    pass


class SshUnavailable(HarnessError):
    pass


class GuestGone(HarnessError):
    """The guest powered off, crashed or panicked under a scenario: no command can finish."""


class HostKeyMismatch(HarnessError):
    """The guest's SSH host key is not one its console announced: refuse to talk to it."""


class Interrupted(HarnessError):
    """Ctrl-C or SIGTERM arrived; the run is torn down."""

    exit_code = 130


class RunFailed(LabError):
    """A run ended without passing; the message is its failure, as written to result.json."""

    def __init__(self, exit_code: int, failure: str) -> None:
        super().__init__(failure)
        self.exit_code = exit_code


class ScenarioFailed(LabError):
    """The guest did not behave as the scenario asserts."""

    exit_code = 1


class CommandFailed(ScenarioFailed):
    """A guest command's exit code was not what the step expected."""

    def __init__(self, machine: str, command: str, rc: int, stdout: str, stderr: str,
                 expected: str = "exit code 0") -> None:
        self.machine, self.command, self.rc = machine, command, rc
        self.stdout, self.stderr = stdout, stderr
        super().__init__(
            f"{machine}: command {command!r} exited {rc}, expected {expected}"
            + _tail("stdout", stdout) + _tail("stderr", stderr)
        )


class CommandTimeout(ScenarioFailed):
    """A guest command ran past its time limit."""


class WaitTimeout(ScenarioFailed):
    """A polled condition never became true; carries what was seen last."""


def _tail(label: str, text: str, lines: int = 20) -> str:
    text = text.rstrip()
    if not text:
        return ""
    kept = text.splitlines()[-lines:]
    return f"\n  {label} (last {len(kept)} lines):\n" + "\n".join(f"    {line}" for line in kept)
