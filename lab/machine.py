"""A guest and the verbs scenarios use on it (NixOS test driver style).

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import libvirt

from lab import console
from lab.console import ConsoleStream
from lab.domain import DomainSpec, render_disk_xml, render_domain_xml
from lab.errors import BootTimeout, CommandFailed, CommandTimeout, GuestGone, HarnessError, SshUnavailable, WaitTimeout
from lab.hypervisor import create_domain, destroy_domain
from lab.log import Log
from lab.retry import wait_until
from lab.ssh import CommandResult, KeyPair, SshSession

ROOT = "root"
GRUB_MENU = "GNU GRUB"  # the header of GRUB's menu on the serial console
KEY_ENTER, KEY_HOME, KEY_DOWN = 28, 102, 108  # Linux input keycodes, for libvirt's sendKey
# Base seconds a reboot may go without its console showing firmware or a kernel before the lab polls SSH
# anyway (an image whose console stays quiet).
QUIET_CONSOLE = 60.0
STOP_WAIT = 15.0  # seconds a guest gets to finish stopping after its SSH connection dropped
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
STOPPED = "the guest stopped (powered off, crashed or destroyed)"
JOURNAL = "journalctl -b --no-pager -o short-monotonic"  # this boot's journal
# cloud-init runs its four stages at the first boot only, as Atomic operators set it up: later boots skip
# them (its systemd generator leaves cloud-init.target out while this file exists).
CLOUD_INIT_OFF = "/etc/cloud/cloud-init.disabled"


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


class Machine:
    def __init__(self, spec: DomainSpec, conn: libvirt.virConnect, ssh: SshSession, log: Log,
                 timeouts: Timeouts, *, autodestroy: bool = True) -> None:
        self.spec, self.conn, self.ssh, self.log, self.timeouts = spec, conn, ssh, log, timeouts
        self.name = spec.name.rsplit("-", 1)[-1]
        self.autodestroy = autodestroy
        self.boot_id = ""
        self.boots = 0
        self.degraded: list[str] = []  # "boot N: unit" for each unit failed when a boot was ready
        self.journals: list[str] = []  # the journals of boots that ended in a reboot
        self._dom: libvirt.virDomain | None = None
        self.gone = ""  # why no command can run any more (the guest stopped or panicked), until a new boot
        self._console_stream: ConsoleStream | None = None  # copies a remote guest's console into console_path
        self._boot_offset = 0  # where the console output of the current boot (or shutdown) begins
        self.cloud_init_every_boot = False  # set by a scenario that tests cloud-init on later boots

    @property
    def user(self) -> str:
        """The unprivileged account the lab logs in as (cloud-init made it; sudo gives root)."""
        return self.ssh.user

    @property
    def console_path(self) -> Path:
        return Path(self.spec.console_path)

    # --- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Create the domain; returns at once (see `wait_for_boot`)."""
        flags = libvirt.VIR_DOMAIN_START_AUTODESTROY if self.autodestroy else 0
        self.gone = ""
        self._boot_offset = self.console_size()
        try:
            self._dom, self._console_stream = create_domain(
                self.conn, render_domain_xml(self.spec), flags,
                self.console_path if self.spec.console_stream else None)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"{self.name}: libvirt refused to start {self.spec.name}: "
                               f"{exc.get_error_message()}") from exc

    def is_running(self) -> bool:
        try:
            return bool(self._dom and self._dom.isActive())
        except libvirt.libvirtError:
            return False

    def wait_for_ssh(self, *, timeout: float | None = None) -> None:
        limit = self._limit(timeout, self.timeouts.boot)

        def connected(last: bool) -> bool | None:
            self._require_running("waiting for SSH")
            stop = console.dead_end(self.console_text(self._boot_offset))
            if stop:
                raise self._stuck(f"guest never answered SSH: its boot cannot go on, the console shows {stop!r}")
            self.ssh.connect()
            return True

        with self.log.nested(f"{self.name}: waiting for SSH on 127.0.0.1:{self.ssh.port}"):
            try:
                wait_until(connected, what=f"SSH on 127.0.0.1:{self.ssh.port}", timeout=limit, interval=2.0)
            except WaitTimeout as exc:
                raise self._stuck(f"guest never answered SSH: {exc}") from exc

    def _stuck(self, what: str) -> BootTimeout:
        """A boot that ran out of time, saying which phase the console shows it stuck in."""
        return BootTimeout(f"{self.name}: {what}\n  the boot is in: "
                           f"{console.boot_phase(self.console_text(self._boot_offset))}")

    def wait_for_boot(self, *, timeout: float | None = None) -> None:
        """Ready: SSH login works, cloud-init is done, systemd is up, boot id recorded."""
        limit = self._limit(timeout, self.timeouts.boot)
        self.wait_for_ssh(timeout=limit)
        with self.log.nested(f"{self.name}: waiting for cloud-init and systemd"):
            try:
                # skipped on boots where cloud-init does not run: the command alone costs seconds under TCG
                self.succeed(f"test -e {CLOUD_INIT_OFF} || cloud-init status --wait >/dev/null "
                             "|| cloud-init status --long", timeout=limit)
                state = self.execute("systemctl is-system-running --wait", timeout=limit).stdout.strip()
            except CommandTimeout as exc:
                raise self._stuck(str(exc)) from exc
            if state not in ("running", "degraded"):
                raise BootTimeout(f"{self.name}: systemd reports {state!r} after boot")
            if state == "degraded":
                self._note_degraded()
        self.boot_id = self.succeed(f"{self._first_boot_only()}{BOOT_ID}").strip()
        self.boots += 1
        self.log.info(f"{self.name}: ready, boot {self.boots}, boot_id {self.boot_id}")
        if not self.ssh.pinned:
            self._pin_host_key()

    def _first_boot_only(self) -> str:
        """The command that keeps cloud-init from running again at the next boot (unless a scenario wants it)."""
        return "" if self.cloud_init_every_boot else f"touch {CLOUD_INIT_OFF}; "

    def _note_degraded(self) -> None:
        """Ready but degraded: the failed units go into the result; the scenario decides what they mean."""
        failed = self.execute("systemctl --failed --no-legend --plain").stdout.strip()
        self.log.warning(f"{self.name}: system is degraded; failed units:\n{failed}")
        self.degraded.extend(f"boot {self.boots + 1}: {line.split()[0]}" for line in failed.splitlines() if line)

    def _keep_journal(self) -> None:
        """This boot's journal, kept for the health check before a reboot ends it (it is volatile)."""
        self.journals.append(self.execute(JOURNAL, timeout=60).stdout)

    def _pin_host_key(self) -> None:
        """Accept from now on only the host keys cloud-init announced on the console, which the
        key this session already saw must be one of."""
        announced = console.host_key_fingerprints(console.strip_ansi(self.console_text()))
        if not announced:
            self.log.warning(f"{self.name}: the console shows no SSH host key fingerprints; host key not pinned")
            return
        self.ssh.pin(announced)
        self.log.info(f"{self.name}: SSH host key {self.ssh.host_key_fingerprint} pinned (announced on the console)")

    def save(self, path: Path) -> None:
        """Flush the guest's disks and save the running guest to `path`; the domain is gone afterwards."""
        with self.log.nested(f"{self.name}: saving the booted guest to {path}"):
            self.succeed("sync")
            self.ssh.close()  # connections do not survive a restore
            try:
                self._running_domain().save(str(path))
            except libvirt.libvirtError as exc:
                raise HarnessError(f"{self.name}: libvirt could not save the guest: {exc.get_error_message()}") from exc
            self._dom = None

    def restore(self, save_file: Path, extra_disks: tuple[str, ...]) -> None:
        """Start from a save file written for this machine (see lab.warm), then hot-plug the disks
        with the serials `extra_disks`, as an operator adds disks to a live host."""
        with self.log.nested(f"{self.name}: restoring a saved guest"):
            try:
                self.conn.restoreFlags(str(save_file), None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
            except libvirt.libvirtError as exc:
                raise HarnessError(f"{self.name}: libvirt could not restore {save_file}: "
                                   f"{exc.get_error_message()}") from exc
            finally:  # whatever libvirt made, even if a signal cut in, so that destroy() removes it
                self._dom = self._lookup()
            if self._dom is None:
                raise HarnessError(f"{self.name}: libvirt restored {save_file} but {self.spec.name} is not there")
        for serial in extra_disks:
            self.attach_disk(serial)

    def wait_for_restore(self, run_key: KeyPair) -> None:
        """Ready after a restore: log in with the saved guest's key, set the clock from the host's
        (it stopped at the save) and put the run's own key in place of the saved guest's."""
        self.wait_for_ssh()
        home = f"$(getent passwd {shlex.quote(self.ssh.user)} | cut -d: -f6)"
        out = self.succeed(f"date -u -s @{time.time():.3f} >/dev/null; "
                           f"printf '%s\\n' {shlex.quote(run_key.public_line)} >\"{home}/.ssh/authorized_keys\"; "
                           f"udevadm settle; {self._first_boot_only()}"
                           f"{BOOT_ID}; systemctl is-system-running || true")
        self.ssh.key = run_key
        self.boot_id, state = out.split()[:2]
        if state not in ("running", "degraded"):
            raise BootTimeout(f"{self.name}: systemd reports {state!r} after the restore")
        if state == "degraded":
            self._note_degraded()
        self.boots += 1
        self.log.info(f"{self.name}: ready (restored), boot_id {self.boot_id}, systemd {state}")

    def start_reboot(self) -> None:
        """Ask the guest to reboot and return at once (for boots that are meant to fail)."""
        self._keep_journal()
        self._boot_offset = self.console_size()  # the shutdown, then the next boot
        self._systemctl_soon("reboot")
        self.ssh.close()

    def reboot(self, *, timeout: float | None = None) -> None:
        """Reboot and wait until the guest is ready under a new boot id."""
        old = self.boot_id
        with self.log.nested(f"{self.name}: rebooting"):
            self.start_reboot()
            limit = self._limit(timeout, self.timeouts.boot)
            quiet_until = time.monotonic() + self.timeouts(QUIET_CONSOLE)

            def new_boot(last: bool) -> str | None:
                self._require_running("rebooting")
                begun = console.booting(self.console_text(self._boot_offset))
                if not (begun or last or time.monotonic() > quiet_until):
                    return None  # still shutting down: the old boot's sshd may take a connection and then die
                self.ssh.connect()
                try:
                    boot_id = self.ssh.run(BOOT_ID, timeout=self.timeouts(10)).stdout.strip()
                except CommandTimeout:  # a connection that a dying sshd took
                    self.ssh.close()
                    return None
                if boot_id == old:
                    self.ssh.close()
                    if last:
                        raise WaitTimeout(f"{self.name}: still on boot {old}: the reboot never happened")
                    return None
                return boot_id

            try:
                wait_until(new_boot, what=f"{self.name} to come back with a new boot id", timeout=limit,
                           interval=2.0)
            except WaitTimeout as exc:
                raise self._stuck(str(exc)) from exc
            self.wait_for_boot(timeout=limit)

    def boot_menu_entry(self, index: int, *, timeout: float | None = None) -> None:
        """Reset the guest and pick entry `index` (0 = first) of GRUB's menu with the keyboard,
        as an operator at the console would; then wait until it is ready."""
        offset = self.console_size()
        with self.log.nested(f"{self.name}: reset, GRUB menu entry {index}"):
            dom = self._press_reset()

            def menu(last: bool) -> bool | None:  # any key stops GRUB's countdown
                dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [KEY_DOWN], 1, 0)
                return True if GRUB_MENU in self.console_text(offset) else None

            limit = self._limit(timeout, self.timeouts.boot)
            self._wait(menu, "GRUB's menu", limit)
            for key in [KEY_HOME, *[KEY_DOWN] * index, KEY_ENTER]:
                dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [key], 1, 0)
            self.wait_for_boot(timeout=limit)

    def detach_disk(self, serial: str, *, timeout: float | None = None) -> None:
        """Unplug the disk with this serial from the running guest, as a failing or pulled disk goes;
        returns once libvirt no longer lists it (the guest has let go of it)."""
        dom = self._running_domain()
        with self.log.nested(f"{self.name}: detaching disk {serial}"):
            dom.detachDeviceFlags(render_disk_xml(self.spec, serial), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            self._wait(lambda last: None if f"<serial>{serial}</serial>" in dom.XMLDesc() else True,
                       f"disk {serial} to leave the domain", timeout)

    def attach_disk(self, serial: str) -> None:
        """Plug a disk of this machine's spec (one `detach_disk` took away) back in."""
        with self.log.nested(f"{self.name}: attaching disk {serial}"):
            self._running_domain().attachDeviceFlags(render_disk_xml(self.spec, serial),
                                                     libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def reset(self, *, timeout: float | None = None) -> None:
        """Press the reset button (for a guest that cannot reboot itself) and wait until it is ready."""
        with self.log.nested(f"{self.name}: reset"):
            self._press_reset()
            self.wait_for_boot(timeout=self._limit(timeout, self.timeouts.boot))

    def _systemctl_soon(self, verb: str) -> None:
        """`systemctl VERB` a second from now, so this command returns first. The timer's accuracy
        is set: systemd's default (1 min) can delay it by up to a minute."""
        self.execute(f"systemd-run --no-block --on-active=1 --timer-property=AccuracySec=100ms systemctl {verb}")

    def _press_reset(self) -> libvirt.virDomain:
        self.ssh.close()  # the connection dies with the boot
        self.gone = ""
        self._boot_offset = self.console_size()
        dom = self._running_domain()
        dom.reset(0)
        return dom

    def shutdown(self, *, timeout: float | None = None) -> None:
        with self.log.nested(f"{self.name}: shutting down"):
            self._systemctl_soon("poweroff")
            self.ssh.close()
            wait_until(lambda last: True if not self.is_running() else None,
                       what=f"{self.name} to power off", timeout=self._limit(timeout, self.timeouts.shutdown))

    def destroy(self) -> None:
        self.ssh.close()
        if self._dom is not None:
            destroy_domain(self._dom)
            self._dom = None
        if self._console_stream is not None:
            self._console_stream.stop()
            self._console_stream = None

    # --- commands --------------------------------------------------------

    def execute(self, command: str, *, timeout: float | None = None, user: str = ROOT) -> CommandResult:
        limit = self._limit(timeout, self.timeouts.command)
        self.log.info(f"$ {command}", prefix=self.name)
        if self.gone:
            raise GuestGone(f"{self.name}: {self.gone}; not running {command!r}")
        since = self.console_size()
        try:
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
            self.gone = STOPPED
        elif panic := console.panic_line(self.console_text(since)):
            self.gone = f"the guest's kernel panicked ({panic})"
        return f"{self.name}: {self.gone} while running {command!r}" if self.gone else None

    def _stopping(self, doing: str) -> None:
        """After a dropped connection: a guest that stops within a few seconds powered off or crashed."""
        stopped = wait_until(lambda last: True if not self.is_running() else (False if last else None),
                             what=f"{self.name} to stop", timeout=STOP_WAIT, interval=0.5)
        if stopped:
            self.gone = STOPPED
            raise GuestGone(f"{self.name}: {self.gone} while {doing}")

    def succeed(self, command: str, *, timeout: float | None = None, user: str = ROOT) -> str:
        result = self.execute(command, timeout=timeout, user=user)
        if result.rc != 0:
            raise CommandFailed(self.name, command, result.rc, result.stdout, result.stderr)
        return result.stdout

    def fail(self, command: str, *, timeout: float | None = None, user: str = ROOT) -> str:
        """Run a command that must fail; returns stdout and stderr together."""
        result = self.execute(command, timeout=timeout, user=user)
        if result.rc == 0:
            raise CommandFailed(self.name, command, 0, result.stdout, result.stderr, "a non-zero exit code")
        return result.stdout + result.stderr

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

        return str(self._wait(attempt, f"{command!r} to succeed", timeout))

    def wait_for_unit(self, unit: str, *, timeout: float | None = None) -> None:
        def active(last: bool) -> bool | None:
            state = self.execute(f"systemctl show -p ActiveState --value {shlex.quote(unit)}").stdout.strip()
            if state == "active":
                return True
            if state == "failed" or last:
                status = self.execute(f"systemctl status --no-pager -n 20 {shlex.quote(unit)}").stdout
                raise WaitTimeout(f"{self.name}: unit {unit} is {state}\n{status}")
            return None

        self._wait(active, f"unit {unit} to be active", timeout)

    def unit_properties(self, unit: str, *names: str) -> dict[str, str]:
        """`systemctl show -p NAME...` of a unit, as a dict."""
        props = " ".join(f"-p {name}" for name in names)
        out = self.succeed(f"systemctl show {props} {shlex.quote(unit)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def _wait(self, predicate: Callable[[bool], object], what: str, timeout: float | None) -> object:
        limit = self._limit(timeout, self.timeouts.wait)
        with self.log.nested(f"{self.name}: waiting for {what}"):
            return wait_until(predicate, what=what, timeout=limit)

    def copy_to(self, local: Path, remote: str) -> None:
        self.log.info(f"copy {local} -> {remote}", prefix=self.name)
        self.ssh.put(local, remote)

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
        """Write a marker line into the kernel log; returns it for `kernel_log_since`."""
        marker = f"lab-mark: {label} {self.boot_id[:8]}"
        self.succeed(f"echo {shlex.quote(marker)} > /dev/kmsg")
        return marker

    def kernel_log_since(self, marker: str) -> list[tuple[float, str]]:
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

    # --- diagnostics -----------------------------------------------------

    def console_size(self) -> int:
        """Where the console capture ends now: an offset for `console_text` and `wait_for_console`."""
        try:
            return self.console_path.stat().st_size
        except FileNotFoundError:
            return 0

    def console_text(self, since: int = 0) -> str:
        with self.console_path.open("rb") as console:
            console.seek(since)
            return console.read().decode(errors="replace").replace("\r", "")

    def wait_for_console(self, pattern: str, *, since: int = 0, timeout: float | None = None) -> str:
        """Poll the serial console from offset `since` until regex `pattern` shows; returns its line."""
        regex = re.compile(pattern)

        def seen(last: bool) -> str | None:
            match = regex.search(self.console_text(since))
            if match:
                return match.string[match.string.rfind("\n", 0, match.start()) + 1:match.end()]
            if last:
                raise WaitTimeout(f"{self.name}: {pattern!r} never appeared on the console")
            return None

        return str(self._wait(seen, f"{pattern!r} on the console", timeout))

    def console_tail(self, lines: int = 30) -> str:
        return console.tail(self.console_path, lines)

    def _limit(self, timeout: float | None, base: float) -> float:
        """A caller's limit as given (0 included), else the base limit scaled for the accelerator."""
        return self.timeouts(base) if timeout is None else timeout

    def _lookup(self) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(self.spec.name)
        except libvirt.libvirtError:
            return None

    def _running_domain(self) -> libvirt.virDomain:
        if self._dom is None:
            raise HarnessError(f"{self.name}: not started")
        return self._dom

    def _require_running(self, doing: str) -> None:
        if not self.is_running():
            raise GuestGone(f"{self.name}: the guest stopped while {doing}")


def _describe(command: str, result: CommandResult) -> str:
    text = f"rc={result.rc} in {result.duration:.2f} s"
    if result.stdout.strip():
        text += "\n--- stdout\n" + result.stdout.rstrip()
    if result.stderr.strip():
        text += "\n--- stderr\n" + result.stderr.rstrip()
    return text

