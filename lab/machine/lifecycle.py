"""A guest's lifecycle and boots: start, wait until ready, reboot, reset, GRUB's menu, disks, save
and restore, shut down. The verbs on a running guest (commands, files, console) are in
`lab.machine.shell`; scenarios use both through `Machine`.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import libvirt

from lab.base.errors import BootTimeout, CommandTimeout, GuestGone, WaitTimeout
from lab.base.log import Log
from lab.base.retry import wait_until
from lab.machine.guest_domain import GuestDomain
from lab.machine.readiness import (
    BOOT_ID,
    CLOUD_INIT_DONE,
    CLOUD_INIT_OFF,
    EVERY_BOOT,
    JOURNAL,
    LIST_BOOTS,
    PREPARE_RESTORES,
    SET_CLOCK,
)
from lab.machine.shell import ROOT as ROOT  # scenarios take it from here, with Machine
from lab.machine.shell import BootState, GuestShell, Timeouts, Verb
from lab.machine.ssh import KeyPair, SshSession
from lab.virt import console
from lab.virt.domain import DiskSpec, DomainSpec, disk_index

GRUB_MENU = "GNU GRUB"  # the header of GRUB's menu on the serial console
KEY_ENTER, KEY_HOME, KEY_DOWN = 28, 102, 108  # Linux input keycodes, for libvirt's sendKey
QUIET_CONSOLE = 60.0  # base seconds a reboot's console may show no firmware nor kernel before the lab polls SSH
# Seconds between looks at a booting guest: most looks read only its console (a local file), and a look
# also powers the guest on again when it restarted (lab.machine.guest_domain); 2 s cost a reboot 1-2 s on average.
BOOT_POLL = 0.5
SSHD_GRACE = 150.0  # base seconds a boot's console may show systemd at work before the lab probes SSH anyway
class Machine:
    """One guest: its lifecycle (boots, reboots, disks, power) here, its verbs in its GuestShell; the two
    share one BootState, which only the lifecycle starts anew."""

    def __init__(self, spec: DomainSpec, conn: libvirt.virConnect, ssh: SshSession, log: Log,
                 timeouts: Timeouts, *, autodestroy: bool = True) -> None:
        self.domain = GuestDomain(spec, conn, autodestroy=autodestroy, on_power_cycle=self._powered_on_again)
        self.ssh, self.log, self.timeouts, self.name = ssh, log, timeouts, self.domain.label
        self.state = BootState()
        self.shell = GuestShell(self.domain, ssh, log, timeouts, self.state)
        self.boots = 0
        self.readies: list[tuple[str, float, float]] = []  # (boot id, began, ready: time.monotonic()) of each boot
        self.degraded: list[str] = []  # "boot N: unit" for each unit failed when a boot was ready
        self.journals: list[str] = []  # the journals of boots that ended in a reboot
        self._journaled: set[str] = set()  # boot ids (journal form) whose journal is kept
        self._plugged = False  # disks were hot-plugged at the restore: udev must have made their links
        self._first_boot = ""  # the run's first boot id (journal form): the journal's boots before it are not the run's
        self._unplanned = False  # boots may have come and gone unwatched (a reset, a reboot the lab did not wait on)
        self._boot_offset, self._began = 0, 0.0  # where the console output of this boot (or shutdown) begins, when

    # the shell's verbs, as scenarios call them on the machine
    is_running = Verb(GuestShell.is_running)
    execute = Verb(GuestShell.execute)
    succeed = Verb(GuestShell.succeed)
    fail = Verb(GuestShell.fail)
    wait_until_succeeds = Verb(GuestShell.wait_until_succeeds)
    wait_for_unit = Verb(GuestShell.wait_for_unit)
    wait_for_open_port = Verb(GuestShell.wait_for_open_port)
    address_of = Verb(GuestShell.address_of)
    get_unit_properties = Verb(GuestShell.get_unit_properties)
    require_unit_state = Verb(GuestShell.require_unit_state)
    require_system_running = Verb(GuestShell.require_system_running)
    require_mount = Verb(GuestShell.require_mount)
    require_absent = Verb(GuestShell.require_absent)
    copy_to = Verb(GuestShell.copy_to)
    copy_from = Verb(GuestShell.copy_from)
    copy_tree_to = Verb(GuestShell.copy_tree_to)
    write_file = Verb(GuestShell.write_file)
    spawn = Verb(GuestShell.spawn)
    wait_for_spawned = Verb(GuestShell.wait_for_spawned)
    mark_kernel_log = Verb(GuestShell.mark_kernel_log)
    get_kernel_log_since = Verb(GuestShell.get_kernel_log_since)
    get_console_size = Verb(GuestShell.get_console_size)
    get_console_text = Verb(GuestShell.get_console_text)
    wait_for_console = Verb(GuestShell.wait_for_console)
    get_console_tail = Verb(GuestShell.get_console_tail)

    @property
    def spec(self) -> DomainSpec:
        """The guest's domain as the lab made it (a disk moved here is part of it)."""
        return self.domain.spec

    @property
    def user(self) -> str:
        """The unprivileged account the lab logs in as (cloud-init made it; sudo gives root)."""
        return self.ssh.user

    @property
    def console_path(self) -> Path:
        return self.domain.console_path

    @property
    def boot_id(self) -> str:
        return self.state.boot_id

    # --- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Create the domain; returns at once (see `wait_for_boot`)."""
        self.state.begin()
        self._boot_begins()
        self.domain.start()
        self.ssh.port = self.domain.ssh_port

    def _boot_begins(self) -> None:
        """The console output and the time of the next boot (or of a shutdown, then the boot) start here."""
        self._boot_offset, self._began = self.get_console_size(), time.monotonic()

    def _powered_on_again(self, why: str) -> None:
        self.ssh.port = self.domain.ssh_port  # a new QEMU process: a new forwarded port
        self.log.info(f"{self.name}: {why}: powered on again")

    def wait_for_ssh(self, *, timeout: float | None = None) -> None:
        limit = self.shell.limit(timeout, self.timeouts.boot)
        give_up_on_console = time.monotonic() + self.timeouts(SSHD_GRACE)

        def connected(last: bool) -> bool | None:
            if self.ssh.connected:  # a reboot's wait for the new boot id connected already
                return True
            self._require_running("waiting for SSH")
            text = self.get_console_text(self._boot_offset)
            self._require_no_dead_end(text, "guest never answered SSH")
            return self._connect_once_sshd_may_answer(text, last, give_up_on_console)

        with self.log.nested(f"{self.name}: waiting for SSH on 127.0.0.1:{self.ssh.port}"):
            try:
                wait_until(connected, what=f"SSH on 127.0.0.1:{self.ssh.port}", timeout=limit, interval=BOOT_POLL)
            except WaitTimeout as exc:
                raise self._stuck(f"guest never answered SSH: {exc}") from exc

    def _connect_once_sshd_may_answer(self, text: str, last: bool, give_up_at: float) -> bool | None:
        """Connect, unless the console shows systemd's status lines and no sshd started in this boot yet (until
        the wait's last try or `give_up_at`, for a console that never shows it). QEMU's port forward accepts at
        once and queues the guest's side until the guest's NIC has an address (DHCP came 10 s after sshd
        listened): every probe given up still reached the guest later, each one more sshd start ahead of the
        lab's own login (ready came 10-15 s after sshd listened)."""
        state = console.sshd_state(text)
        if state == "pending" and not (last or time.monotonic() > give_up_at):
            return None
        self.ssh.connect(patient=state == "started")
        return True

    def _require_no_dead_end(self, text: str, what: str) -> None:
        """Stop waiting at once when the console shows a boot that no login can follow."""
        stop = console.dead_end(text)
        if stop:
            self.state.lose(f"its boot cannot go on (the console shows {stop!r})")  # no command tries SSH
            raise self._stuck(f"{what}: its boot cannot go on, the console shows {stop!r}")

    def _stuck(self, what: str) -> BootTimeout:
        """A boot that ran out of time, saying which phase the console shows it stuck in."""
        return BootTimeout(f"{self.name}: {what}\n  the boot is in: "
                           f"{console.boot_phase(self.get_console_text(self._boot_offset))}")

    def wait_for_boot(self, *, timeout: float | None = None) -> None:
        """Ready: SSH login works, cloud-init is done, systemd is up, boot id recorded."""
        limit = self.shell.limit(timeout, self.timeouts.boot)
        self.wait_for_ssh(timeout=limit)
        with self.log.nested(f"{self.name}: waiting for cloud-init and systemd"):
            try:  # one command: each costs a login's worth of time under TCG
                out = self.succeed(f"{CLOUD_INIT_DONE}; systemctl is-system-running --wait || true; "
                                   f"{BOOT_ID}", timeout=limit)
            except CommandTimeout as exc:
                raise self._stuck(str(exc)) from exc
            state, boot_id = out.split()[-2:]
            self.state.begin(boot_id)
            if state not in ("running", "degraded"):
                raise BootTimeout(f"{self.name}: systemd reports {state!r} after boot")
            if state == "degraded":
                self._note_degraded()
        self._keep_lost_journals()
        self.boots += 1
        self.readies.append((self.boot_id, self._began, time.monotonic()))
        self.log.info(f"{self.name}: ready, boot {self.boots}, boot_id {self.boot_id}")

    def run_cloud_init_at_every_boot(self) -> None:
        """From the next boot on, cloud-init runs its stages at every boot (for a scenario that tests them):
        the seed's bootcmd no longer disables it."""
        self.succeed(f"rm -f {CLOUD_INIT_OFF} && touch {EVERY_BOOT}")

    def failed_units(self) -> tuple[str, ...]:
        """The units that had failed when the current boot was ready."""
        this_boot = f"boot {self.boots}: "
        return tuple(entry.removeprefix(this_boot) for entry in self.degraded if entry.startswith(this_boot))

    def _note_degraded(self) -> None:
        """Ready but degraded: the failed units go into the result; the scenario decides what they mean."""
        failed = self.execute("systemctl --failed --no-legend --plain").stdout.strip()
        self.log.warning(f"{self.name}: system is degraded; failed units:\n{failed}")
        self.degraded.extend(f"boot {self.boots + 1}: {line.split()[0]}" for line in failed.splitlines() if line)

    def _keep_journal(self) -> None:
        """This boot's journal, kept for the health check before a reboot ends it."""
        self.journals.append(self.execute(JOURNAL, timeout=60).stdout)
        self._journaled.add(self.boot_id.replace("-", ""))

    def _keep_lost_journals(self) -> None:
        """The journals of this run's boots that ended without the lab asking (a reset, a boot that failed
        and rebooted itself), from the guest's persistent journal, oldest first. A boot that died before
        journald wrote to disk has only its console (console.log)."""
        current = self.boot_id.replace("-", "")
        if not self._first_boot:
            self._first_boot = current
        if not self._unplanned:
            return
        self._unplanned = False
        listed = re.findall(r"\b[0-9a-f]{32}\b", self.execute(LIST_BOOTS).stdout)
        run_boots = listed[listed.index(self._first_boot):] if self._first_boot in listed else []
        for boot in (b for b in run_boots if b not in self._journaled and b != current):
            journal = self.execute(f"journalctl -b {boot} --no-pager -o short-monotonic", timeout=60)
            self.journals.append(journal.stdout)
            self._journaled.add(boot)

    def save(self, path: str) -> None:
        """Flush the guest's disks and save the running guest to `path` (on the libvirt host); the domain is
        gone afterwards."""
        with self.log.nested(f"{self.name}: saving the booted guest to {path}"):
            if self.execute(PREPARE_RESTORES.format(user=self.user)).rc != 0:
                self.log.info(f"{self.name}: no {SET_CLOCK} (see above): its restores set the clock through sudo")
            self.succeed("sync")
            self.ssh.close()  # connections do not survive a restore
            self.domain.save(path)

    def restore(self, save_file: str, extra_disks: tuple[str, ...]) -> None:
        """Start from a save file written for this machine (see lab.provision.warm), then hot-plug the disks
        with the serials `extra_disks`, as an operator adds disks to a live host."""
        self._boot_begins()  # a restored guest prints nothing: no boot to read
        with self.log.nested(f"{self.name}: restoring a saved guest"):
            self.domain.restore(save_file)
        self.ssh.port = self.domain.ssh_port
        for serial in extra_disks:
            self.attach_disk(serial)
        self._plugged = bool(extra_disks)

    def wait_for_restore(self, run_key: KeyPair, saved_failed: tuple[str, ...]) -> None:
        """Ready after a restore: log in with the saved guest's key, set the clock from the host's
        (it stopped at the save) and put the run's own key in place of the saved guest's; one command as
        the login user. `saved_failed`: the units that had failed when the guest was saved (it carries
        on from there, and was saved with cloud-init off for later boots)."""
        self.wait_for_ssh()
        now = f"@{time.time():.3f}"
        write_key = f"printf '%s\\n' {shlex.quote(run_key.public_line)} >~{self.user}/.ssh/authorized_keys"
        out = self.succeed(f"if [ -x {SET_CLOCK} ]; then {SET_CLOCK} -u -s {now}; {write_key}; "
                           f"else sudo -n bash -c {shlex.quote(f'date -u -s {now}; {write_key}')}; fi >/dev/null; "
                           f"{'sudo -n udevadm settle; ' if self._plugged else ''}{BOOT_ID}",  # the disks' links
                           user=self.user)
        self.ssh.key = run_key
        self.state.begin(out.strip())
        if saved_failed:
            self.log.warning(f"{self.name}: the saved guest is degraded; failed units: {', '.join(saved_failed)}")
            self.degraded.extend(f"boot {self.boots + 1}: {unit}" for unit in saved_failed)
        self._keep_lost_journals()
        self.boots += 1
        self.readies.append((self.boot_id, self._began, time.monotonic()))
        self.log.info(f"{self.name}: ready (restored), boot_id {self.boot_id}, "
                      f"systemd {'degraded' if saved_failed else 'running'} when saved")

    def start_reboot(self) -> None:
        """Ask the guest to reboot and return at once (for boots that are meant to fail)."""
        self._keep_journal()
        self._boot_begins()  # the shutdown, then the next boot
        self._systemctl_soon("reboot")
        self.ssh.close()
        self._unplanned = True

    def reboot(self, *, timeout: float | None = None) -> None:
        """Reboot and wait until the guest is ready under a new boot id."""
        old = self.boot_id
        with self.log.nested(f"{self.name}: rebooting"):
            self.start_reboot()
            self._unplanned = False  # the lab watches this one through to the next boot
            limit = self.shell.limit(timeout, self.timeouts.boot)
            quiet_until = time.monotonic() + self.timeouts(QUIET_CONSOLE)
            give_up_on_console = time.monotonic() + self.timeouts(SSHD_GRACE)

            def new_boot(last: bool) -> str | None:
                self._require_running("rebooting")
                text = self.get_console_text(self._boot_offset)
                if not (console.booting(text) or last or time.monotonic() > quiet_until):
                    return None  # still shutting down: the old boot's sshd may take a connection and then die
                self._require_no_dead_end(text, "never came back from the reboot")
                if not self._connect_once_sshd_may_answer(text, last, give_up_on_console):
                    return None
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
                           interval=BOOT_POLL)
            except WaitTimeout as exc:
                raise self._stuck(str(exc)) from exc
            self.wait_for_boot(timeout=limit)

    def boot_menu_entry(self, index: int, *, timeout: float | None = None) -> None:
        """Reset the guest and pick entry `index` (0 = first) of GRUB's menu with the keyboard,
        as an operator at the console would; then wait until it is ready."""
        offset = self.get_console_size()
        with self.log.nested(f"{self.name}: reset, GRUB menu entry {index}"):
            self._press_reset()

            def menu(last: bool) -> bool | None:  # any key stops GRUB's countdown
                self.domain.send_keys([KEY_DOWN])
                return True if GRUB_MENU in self.get_console_text(offset) else None

            limit = self.shell.limit(timeout, self.timeouts.boot)
            self.shell.wait(menu, "GRUB's menu", limit)
            self.domain.send_keys([KEY_HOME, *[KEY_DOWN] * index, KEY_ENTER])
            self.wait_for_boot(timeout=limit)

    def detach_disk(self, serial: str, *, timeout: float | None = None) -> None:
        """Unplug the disk with this serial from the running guest, as a failing or pulled disk goes;
        returns once libvirt no longer lists it (the guest has let go of it)."""
        with self.log.nested(f"{self.name}: detaching disk {serial}"):
            self.domain.detach_disk(serial, lambda done, what: self.shell.wait(done, what, timeout))

    def attach_disk(self, serial: str) -> None:
        """Plug a disk of this machine's spec (one `detach_disk` took away) back in."""
        with self.log.nested(f"{self.name}: attaching disk {serial}"):
            self.domain.attach_disk(serial)

    def get_disk(self, serial: str) -> DiskSpec:
        """The disk with this serial, as the lab gave it to the guest."""
        return self.spec.disks[disk_index(self.spec, serial)]

    def adopt_disk(self, disk: DiskSpec) -> None:
        """Plug in a disk another guest of the run let go of (`detach_disk` there), and wait for its device."""
        with self.log.nested(f"{self.name}: attaching disk {disk.serial} (moved here)"):
            self.domain.adopt_disk(disk)
            self.wait_until_succeeds(f"test -b /dev/disk/by-id/virtio-{disk.serial}")

    def reset(self, *, timeout: float | None = None) -> None:
        """Press the reset button (for a guest that cannot reboot itself) and wait until it is ready."""
        with self.log.nested(f"{self.name}: reset"):
            self._press_reset()
            self.wait_for_boot(timeout=self.shell.limit(timeout, self.timeouts.boot))

    def _systemctl_soon(self, verb: str) -> None:
        """`systemctl VERB` a second from now, so this command returns first (accuracy 100 ms, not a minute)."""
        self.execute(f"systemd-run --no-block --on-active=1 --timer-property=AccuracySec=100ms systemctl {verb}")

    def _press_reset(self) -> None:
        self.ssh.close()  # the connection dies with the boot
        self.state.begin()
        self._boot_begins()
        self._unplanned = True
        self.domain.reset()

    def shutdown(self, *, timeout: float | None = None) -> None:
        with self.log.nested(f"{self.name}: shutting down"):
            self._systemctl_soon("poweroff")
            self.ssh.close()
            wait_until(lambda last: True if not self.is_running() else None,
                       what=f"{self.name} to power off", timeout=self.shell.limit(timeout, self.timeouts.shutdown))

    def hand_over(self) -> dict[str, str | int]:
        """Close the lab's connection and say how to log in (a kept guest): user, port, key file, the
        host key the lab pinned."""
        self.ssh.close()
        trouble = self.domain.hand_over()
        if trouble:
            self.log.warning(f"{self.name}: {trouble}")
        return {"user": self.ssh.user, "port": self.ssh.port, "key": str(self.ssh.key.private_path),
                "host_key": self.ssh.pinned_key}

    def destroy(self) -> None:
        self.ssh.close()
        self.domain.destroy()

    def power_off(self) -> None:
        """Pull the plug on a guest the scenario left where no login reaches (an emergency shell), once its
        evidence is read: commands fail from here on, and the run's health check reads its console alone."""
        self.destroy()
        self.state.lose("powered off by the scenario")

    def _require_running(self, doing: str) -> None:
        if not self.is_running():
            raise GuestGone(f"{self.name}: the guest stopped while {doing}")

