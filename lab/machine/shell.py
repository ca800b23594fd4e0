"""The verbs on a running guest (NixOS test driver style): commands, files, background jobs, the
kernel log and the serial console. `lab.machine.Machine` holds one, beside its lifecycle; both read the
guest's BootState, which only the lifecycle starts anew (a boot) and either may find lost (the guest stopped).

`execute` returns a result and never raises on a non-zero exit; `succeed`
raises unless the exit code is 0, `fail` unless it is not; `wait_*` poll.
Commands run as root through sudo, under `set -euo pipefail` and `LC_ALL=C`.
"""

from __future__ import annotations

import os
import re
import shlex
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

from lab.base.errors import CommandFailed, GuestGone, HarnessError, ScenarioFailed, SshUnavailable, WaitTimeout
from lab.base.log import Log
from lab.base.retry import wait_until
from lab.machine.guest_domain import GuestDomain
from lab.machine.ssh import CommandResult, SshSession
from lab.virt import console

ROOT = "root"
STOP_WAIT = 15.0  # seconds a guest gets to finish stopping after its SSH connection dropped
STOPPED = "the guest stopped (powered off, crashed or destroyed)"
TRANSCRIPT_OUTPUT = 128_000  # characters of one command's stdout (or stderr) the transcript keeps


@dataclass(frozen=True)
class Timeouts:
    """Base limits in seconds, multiplied by `scale` (slow accelerators, LAB_TIMEOUT_FACTOR)."""

    scale: float
    boot: float
    command: float = 120.0
    wait: float = 60.0
    shutdown: float = 60.0

    def __call__(self, seconds: float) -> float:
        return seconds * self.scale


def shell(command: str, user: str, login_user: str) -> str:
    script = f"set -euo pipefail; export LC_ALL=C; {command}"
    argv = ["/bin/bash", "-c", script]
    if user == ROOT and login_user != ROOT:
        argv = ["sudo", "-n", "--", *argv]
    elif user not in (ROOT, login_user):
        argv = ["sudo", "-n", "-u", user, "-i", "--", *argv]
    return shlex.join(argv)



P = ParamSpec("P")
R = TypeVar("R")


class Verb(Generic[P, R]):
    """A GuestShell verb offered on what holds the shell as `.shell` (the Machine: scenarios call
    `vm.succeed(...)`), with the verb's own signature."""

    def __init__(self, verb: Callable[Concatenate[GuestShell, P], R]) -> None:
        self.name = verb.__name__

    def __get__(self, holder: Any, owner: type) -> Callable[P, R]:
        return cast(Callable[P, R], getattr(holder.shell, self.name))


@dataclass
class BootState:
    """The current boot of one guest: its boot id, and why no command can run any more (it stopped or
    panicked) until the next boot."""

    boot_id: str = ""
    gone: str = ""

    def lose(self, why: str) -> None:
        self.gone = why

    def begin(self, boot_id: str = "") -> None:
        """A new boot (or power-on): commands may run again."""
        self.boot_id, self.gone = boot_id or self.boot_id, ""


class GuestShell:
    def __init__(self, domain: GuestDomain, ssh: SshSession, log: Log, timeouts: Timeouts,
                 state: BootState) -> None:
        self.domain, self.ssh, self.log, self.timeouts, self.state = domain, ssh, log, timeouts, state
        self.name = domain.label

    def is_running(self) -> bool:
        return self.domain.is_running()

    def execute(self, command: str, *, timeout: float | None = None, user: str = ROOT) -> CommandResult:
        limit = self.limit(timeout, self.timeouts.command)
        self.log.info(f"$ {command}", prefix=self.name)
        if self.state.gone:
            raise GuestGone(f"{self.name}: {self.state.gone}; not running {command!r}")
        since = self.get_console_size()
        try:
            if not self.ssh.connected:  # the lab closed it (a reboot, a save) or it dropped: one new attempt
                self.ssh.connect()
            result = self.ssh.run(shell(command, user, self.ssh.user), timeout=limit,
                                  abandon=lambda: self._trouble(since, command))
        except SshUnavailable:
            self._stopping(f"running {command!r}")
            raise
        self.log.transcript(_describe(command, result), prefix=self.name)
        return result

    def _trouble(self, since: int, command: str) -> str | None:
        """Why a silent command can never finish: the guest stopped, or its kernel panicked."""
        if not self.is_running():
            self.state.lose(STOPPED)
        elif panic := console.panic_line(self.get_console_text(since)):
            self.state.lose(f"the guest's kernel panicked ({panic})")
        return f"{self.name}: {self.state.gone} while running {command!r}" if self.state.gone else None

    def _stopping(self, doing: str) -> None:
        """After a dropped connection: a guest that stops within a few seconds powered off or crashed."""
        stopped = wait_until(lambda last: True if not self.is_running() else (False if last else None),
                             what=f"{self.name} to stop", timeout=STOP_WAIT, interval=0.5)
        if stopped:
            self.state.lose(STOPPED)
            raise GuestGone(f"{self.name}: {STOPPED} while {doing}")

    def succeed(self, command: str, *, timeout: float | None = None, user: str = ROOT) -> str:
        result = self.execute(command, timeout=timeout, user=user)
        if result.rc != 0:
            raise CommandFailed(self.name, command, result.rc, result.stdout, result.stderr)
        return result.stdout

    def fail(self, command: str, expect: str | int, *, timeout: float | None = None, user: str = ROOT) -> str:
        """Run a command that must fail the way the field saw it: `expect` is its exit code, or text its
        output (stdout and stderr) must hold; any other failure fails the step. Returns the output."""
        result = self.execute(command, timeout=timeout, user=user)
        said = result.stdout + result.stderr
        wanted = f"exit code {expect}" if isinstance(expect, int) else f"a failure saying {expect!r}"
        if result.rc == 0 or (result.rc != expect if isinstance(expect, int) else expect not in said):
            raise CommandFailed(self.name, command, result.rc, result.stdout, result.stderr, wanted)
        return said

    def wait_until_succeeds(self, command: str, *, timeout: float | None = None, user: str = ROOT) -> str:
        """Poll `command` until it exits 0; returns its stdout."""

        def attempt(last: bool) -> str | None:
            result = self.execute(command, user=user)
            if result.rc == 0:
                return result.stdout
            if last:
                raise WaitTimeout(f"{self.name}: {command!r} still exits {result.rc}"
                                  f"\n  output: {(result.stdout + result.stderr).strip()[-2000:]}")
            return None

        return str(self.wait(attempt, f"{command!r} to succeed", timeout))

    def wait_for_unit(self, unit: str, *, timeout: float | None = None) -> None:
        def active(last: bool) -> bool | None:
            state = self.execute(f"systemctl show -p ActiveState --value {shlex.quote(unit)}").stdout.strip()
            if state == "active":
                return True
            if state == "failed" or last:
                status = self.execute(f"systemctl status --no-pager -n 20 {shlex.quote(unit)}").stdout
                raise WaitTimeout(f"{self.name}: unit {unit} is {state}\n{status}")
            return None

        self.wait(active, f"unit {unit} to be active", timeout)

    def wait_for_open_port(self, port: int, *, host: str = "127.0.0.1", timeout: float | None = None) -> None:
        """Until something accepts TCP connections on host:port, as seen from this guest (another guest
        of the run by its name, or this one)."""
        self.wait_until_succeeds(f"timeout 5 bash -c '</dev/tcp/{host}/{port}'", timeout=timeout)

    def address_of(self, name: str) -> str:
        """The IPv4 address this guest resolves host `name` to. Through getaddrinfo (`getent ahostsv4`):
        `getent hosts` asks for an IPv6 address first, which no lab guest's /etc/hosts lists, and so asked DNS,
        which a guest without outbound access never reaches: 10 s per name."""
        return self.succeed(f"getent ahostsv4 {shlex.quote(name)}").split()[0]

    def get_unit_properties(self, unit: str, *names: str) -> dict[str, str]:
        """`systemctl show -p NAME...` of a unit, as a dict."""
        props = " ".join(f"-p {name}" for name in names)
        out = self.succeed(f"systemctl show {props} {shlex.quote(unit)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    # --- checks that assert at once (no polling) ---------------------------

    def require_unit_state(self, unit: str, state: str) -> None:
        """Fail the scenario unless systemd reports `unit`'s ActiveState as `state` now."""
        now = self.get_unit_properties(unit, "ActiveState")["ActiveState"]
        if now != state:
            status = self.execute(f"systemctl status --no-pager -n 20 {shlex.quote(unit)}").stdout
            raise ScenarioFailed(f"{self.name}: unit {unit} is {now}, expected {state}\n{status}")

    def require_system_running(self) -> None:
        """Fail the scenario unless systemd reports the system `running` now (booted, no unit failed)."""
        state = self.execute("systemctl is-system-running").stdout.strip()
        if state != "running":
            failed = self.execute("systemctl --failed --no-legend --plain").stdout
            raise ScenarioFailed(f"{self.name}: systemd reports {state!r}, expected 'running'; failed units:\n{failed}")

    def require_mount(self, path: str, source: str, fstype: str) -> None:
        """Fail the scenario unless `path` is a mount point of `source` with filesystem `fstype` now."""
        found = self.execute(f"findmnt -n -o SOURCE,FSTYPE --mountpoint {shlex.quote(path)}").stdout.split()
        if found != [source, fstype]:
            table = self.execute("findmnt -l -o TARGET,SOURCE,FSTYPE").stdout
            raise ScenarioFailed(f"{self.name}: {path} is mounted from {' '.join(found) or 'nothing'}, "
                                 f"expected {source} ({fstype})\n{table}")

    def require_absent(self, path: str) -> None:
        """Fail the scenario if `path` exists in the guest now."""
        found = self.execute(f"ls -ld {shlex.quote(path)}")
        if found.rc == 0:
            raise ScenarioFailed(f"{self.name}: {path} exists, expected none: {found.stdout.strip()}")

    def wait(self, predicate: Callable[[bool], object], what: str, timeout: float | None) -> object:
        limit = self.limit(timeout, self.timeouts.wait)
        with self.log.nested(f"{self.name}: waiting for {what}"):
            return wait_until(predicate, what=what, timeout=limit)

    def copy_to(self, local: Path, remote: str) -> None:
        self.log.info(f"copy {local} -> {remote}", prefix=self.name)
        self.ssh.put(local, remote)

    def copy_from(self, remote: str, local: Path) -> None:
        """Copy a file the guest made (readable by root) to `local` on the host."""
        staging = f"/tmp/lab-copy-{os.getpid()}-{Path(remote).name}"
        self.succeed(f"install -m 0644 {shlex.quote(remote)} {staging} && chown {shlex.quote(self.ssh.user)} {staging}")
        self.log.info(f"copy {remote} -> {local}", prefix=self.name)
        self.ssh.get(staging, local)
        self.succeed(f"rm -f {staging}")

    def copy_tree_to(self, local: Path, remote: str) -> None:
        """Copy directory `local` to `remote` (created, owned by root) as one archive."""
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "tree.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(local, arcname=".")
            staging = f"/tmp/lab-tree-{os.getpid()}-{local.name}.tar.gz"
            self.copy_to(archive, staging)
        target = shlex.quote(remote)
        self.succeed(f"mkdir -p {target} && tar -xzf {staging} --no-same-owner -C {target} && rm -f {staging}")

    def write_file(self, remote: str, text: str, *, user: str = ROOT) -> None:
        """Write `text` to `remote` as `user`, creating its directory."""
        path = shlex.quote(remote)
        self.succeed(f"mkdir -p \"$(dirname {path})\" && printf %s {shlex.quote(text)} > {path}", user=user)

    def spawn(self, command: str, *, name: str) -> None:
        """Start `command` as root in the background; `wait_for_spawned(name)` collects it."""
        script = f"({command}) >/run/lab-{name}.out 2>&1; echo $? >/run/lab-{name}.rc"
        self.succeed(f"rm -f /run/lab-{name}.rc; setsid -f bash -c {shlex.quote(script)} </dev/null >/dev/null 2>&1")

    def wait_for_spawned(self, name: str, *, timeout: float | None = None) -> CommandResult:
        """Exit code and output of a `spawn`ed command, once it has ended."""
        rc = self.wait_until_succeeds(f"cat /run/lab-{name}.rc", timeout=timeout)
        output = self.succeed(f"cat /run/lab-{name}.out")
        return CommandResult(name, int(rc.strip()), output, "", 0.0)

    # --- the kernel log ----------------------------------------------------

    def mark_kernel_log(self, label: str) -> str:
        """Write a marker line into the kernel log; returns it for `get_kernel_log_since`."""
        marker = f"lab-mark: {label} {self.state.boot_id[:8]}"
        self.succeed(f"echo {shlex.quote(marker)} > /dev/kmsg")
        return marker

    def get_kernel_log_since(self, marker: str) -> list[tuple[float, str]]:
        """(seconds since boot, text) of the `marker` line and each kernel log line after it."""
        lines = self.succeed("dmesg").splitlines()
        found: list[tuple[float, str]] = []
        seen = False
        for line in lines:
            stamp, _, text = line.partition("] ")
            seen = seen or marker in text
            if seen:
                found.append((float(stamp.strip("[ ") or 0), text))
        if not seen:
            raise HarnessError(f"{self.name}: kernel log marker {marker!r} is gone (log rotated?)")
        return found

    # --- the serial console ----------------------------------------------

    def get_console_size(self) -> int:
        """Where the console capture ends now: an offset for `get_console_text` and `wait_for_console`."""
        return console.size(self.domain.console_path)

    def get_console_text(self, since: int = 0) -> str:
        return console.read(self.domain.console_path, since)

    def wait_for_console(self, pattern: str, *, since: int = 0, timeout: float | None = None) -> str:
        """Poll the serial console from offset `since` until regex `pattern` shows; returns its line."""
        regex = re.compile(pattern)

        def seen(last: bool) -> str | None:
            self.is_running()  # a guest whose kernel restarted is powered on again (see lab.machine.guest_domain)
            match = regex.search(self.get_console_text(since))
            if match:
                return match.string[match.string.rfind("\n", 0, match.start()) + 1:match.end()]
            if last:
                raise WaitTimeout(f"{self.name}: {pattern!r} never appeared on the console")
            return None

        return str(self.wait(seen, f"{pattern!r} on the console", timeout))

    def get_console_tail(self, lines: int = 30) -> str:
        return console.tail(self.domain.console_path, lines)

    def limit(self, timeout: float | None, base: float) -> float:
        """A caller's limit as given (0 included), else the base limit scaled for the accelerator."""
        return self.timeouts(base) if timeout is None else timeout


def _describe(command: str, result: CommandResult) -> str:
    text = f"rc={result.rc} in {result.duration:.2f} s"
    if result.stdout.strip():
        text += "\n--- stdout\n" + _shortened(result.stdout.rstrip())
    if result.stderr.strip():
        text += "\n--- stderr\n" + _shortened(result.stderr.rstrip())
    return text


def _shortened(output: str) -> str:
    """A command's output for the transcript: its start and its end when it is long (a whole journal is
    evidence, kept whole by whoever asked for it, not transcript)."""
    if len(output) <= TRANSCRIPT_OUTPUT:
        return output
    half = TRANSCRIPT_OUTPUT // 2
    return f"{output[:half]}\n[… {len(output) - 2 * half} characters not shown here …]\n{output[-half:]}"

