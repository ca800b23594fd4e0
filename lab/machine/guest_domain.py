"""One lab guest's libvirt domain: start, save and restore, reboots, reset, keys, disks, metadata, destroy.

The Machine (lab.machine) holds one and speaks to the guest; this is the hypervisor's side only.

A guest's reboot is a power cycle: its domain's on_reboot is destroy, and the domain is created again from
its last definition (hot-plugged disks included) as soon as the lab finds it stopped with its kernel
restarting on the console. Under TCG a fresh QEMU boots faster than one reset in place: a lab-bookworm
reboot's kernel and initramfs took 11-18 s in place against 7 s from a fresh process, the same disk.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import libvirt

from lab.base.errors import HarnessError
from lab.base.retry import wait_until
from lab.virt import console
from lab.virt.console import ConsoleStream
from lab.virt.domain import LAB_NS, DiskSpec, DomainSpec, render_disk_xml, render_domain_xml
from lab.virt.hypervisor import create_domain, destroy_domain, forwarded_ssh_port

CONSOLE_LAG = 1.5  # seconds the console file may trail a stopped guest's last line (virtlogd copies it)
# libvirt forgets a stopped transient domain a moment after it reports it stopped; until then it refuses the
# name to a new one ("domain … is already being removed": once in a day of runs here). Host-side bookkeeping.
REMOVAL_WAIT = 10.0


class _StillRemoving(HarnessError):
    """libvirt has not yet forgotten the stopped domain of the same name: not yet, not a failure."""


class GuestDomain:
    def __init__(self, spec: DomainSpec, conn: libvirt.virConnect, *, autodestroy: bool = True,
                 on_power_cycle: Callable[[str], None] = lambda why: None) -> None:
        self.spec, self.conn, self.autodestroy = spec, conn, autodestroy
        self.label = spec.name.rsplit("-", 1)[-1]
        self.on_power_cycle = on_power_cycle
        self._dom: libvirt.virDomain | None = None
        self._console_stream: ConsoleStream | None = None  # copies a remote guest's console into its file
        self._xml = ""  # the running domain's definition, to create it again at a reboot
        self._powered_on_at = 0  # where this power-on's console output begins
        self._stopped = False  # found stopped for good (powered off, or crashed)
        self.ssh_port = spec.ssh_port  # where SSH is forwarded: QEMU's choice when the spec asks for port 0
        self.events: list[tuple[float, str]] = []  # (time.monotonic(), what): hot-plugs and resets, for the report

    @property
    def console_path(self) -> Path:
        return Path(self.spec.console_path)

    def start(self) -> None:
        """Create the domain; returns at once."""
        self._create(render_domain_xml(self.spec))

    def _create(self, xml: str) -> None:
        flags = libvirt.VIR_DOMAIN_START_AUTODESTROY if self.autodestroy else 0
        self._powered_on_at = console.size(self.console_path)
        try:
            self._dom, self._console_stream = create_domain(
                self.conn, xml, flags, self.console_path if self.spec.console_stream else None)
        except libvirt.libvirtError as exc:
            message = exc.get_error_message() or str(exc)
            error = _StillRemoving if "is already being removed" in message else HarnessError
            raise error(f"{self.label}: libvirt refused to start {self.spec.name}: {message}") from exc
        self._remember()
        self._read_ssh_port()

    def _remember(self) -> None:
        """Keep the running domain's definition as it is now (disks plugged or unplugged included)."""
        self._xml = self._running().XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        self._stopped = False

    def _read_ssh_port(self) -> None:
        """Each QEMU process binds its own port for SSH (a power cycle starts a new one)."""
        if self.spec.ssh_port == 0 and self.spec.domain_type != "test":
            self.ssh_port = forwarded_ssh_port(self._running())

    def is_running(self) -> bool:
        """Whether the guest is up. A guest found stopped with its kernel restarting on the console is
        powered on again first, as QEMU would have reset it in place."""
        if self._active():
            return True
        if self._dom is None or self._stopped or not self._xml:
            return False
        restarted = wait_until(lambda last: True if self._console_shows_restart() else (False if last else None),
                               what=f"{self.label}'s last console line", timeout=CONSOLE_LAG, interval=0.3)
        if not restarted:
            self._stopped = True
            return False
        self._power_cycle("its kernel restarted")
        return True

    def _console_shows_restart(self) -> bool:
        return console.restarting(console.read(self.console_path, self._powered_on_at))

    def _active(self) -> bool:
        try:
            return bool(self._dom and self._dom.isActive())
        except libvirt.libvirtError:
            return False

    def _power_cycle(self, why: str) -> None:
        if self._dom is not None:
            destroy_domain(self._dom)
        if self._console_stream is not None:
            self._console_stream.stop()
        wait_until(self._create_again, what=f"libvirt to start {self.spec.name} again", timeout=REMOVAL_WAIT,
                   interval=0.2, transient=(_StillRemoving,))
        self.on_power_cycle(why)

    def _create_again(self, _last: bool) -> bool:
        self._create(self._xml)
        return True

    def save(self, path: str) -> None:
        """Save the running guest to `path` (on the libvirt host); the domain is gone afterwards."""
        try:
            self._running().save(path)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"{self.label}: libvirt could not save the guest: {exc.get_error_message()}") from exc
        self._dom = None

    def restore(self, save_file: str) -> None:
        """Restore the guest from `save_file` (on the libvirt host). A remote guest's console is streamed
        into its file: it is restored paused and runs once the stream is open."""
        streamed = self.spec.console_stream
        try:
            self.conn.restoreFlags(save_file, None, libvirt.VIR_DOMAIN_SAVE_PAUSED if streamed
                                   else libvirt.VIR_DOMAIN_SAVE_RUNNING)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"{self.label}: libvirt could not restore {save_file}: "
                               f"{exc.get_error_message()}") from exc
        finally:  # whatever libvirt made, even if a signal cut in, so that destroy() removes it
            self._dom = self._lookup()
        if self._dom is None:
            raise HarnessError(f"{self.label}: libvirt restored {save_file} but {self.spec.name} is not there")
        if streamed:
            self._console_stream = ConsoleStream.to_file(self.conn, self._dom, self.console_path)
            self._dom.resume()
        self._powered_on_at = console.size(self.console_path)
        self._remember()
        self._read_ssh_port()

    def reset(self) -> None:
        """The reset button: a power cycle, as every reboot of the lab's guests."""
        self._running()
        self.events.append((time.monotonic(), "reset button"))
        self._power_cycle("the reset button")

    def hand_over(self) -> str:
        """From now on the guest reboots in place (a kept guest: no lab is there to power it on again);
        returns what went wrong, if anything."""
        try:
            self._running().setLifecycleAction(libvirt.VIR_DOMAIN_LIFECYCLE_REBOOT,
                                               libvirt.VIR_DOMAIN_LIFECYCLE_ACTION_RESTART,
                                               libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            return f"a reboot inside it powers it off (libvirt: {exc.get_error_message()})"
        return ""

    def send_keys(self, keycodes: Sequence[int]) -> None:
        """Press and release each key (Linux input keycodes) in turn, as at the guest's keyboard."""
        dom = self._running()
        for key in keycodes:
            dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [key], 1, 0)

    def detach_disk(self, serial: str, wait: Callable[[Callable[[bool], bool | None], str], object]) -> None:
        """Unplug the disk with this serial; `wait(done, what)` returns once libvirt no longer lists it."""
        dom = self._running()
        dom.detachDeviceFlags(render_disk_xml(self.spec, serial), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        wait(lambda last: None if f"<serial>{serial}</serial>" in dom.XMLDesc() else True,
             f"disk {serial} to leave the domain")
        self.events.append((time.monotonic(), f"disk {serial} unplugged"))
        self._remember()

    def attach_disk(self, serial: str) -> None:
        """Plug in a disk of this domain's spec (one `detach_disk` took away, or a restore left out)."""
        self._running().attachDeviceFlags(render_disk_xml(self.spec, serial), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self.events.append((time.monotonic(), f"disk {serial} plugged in"))
        self._remember()

    def adopt_disk(self, disk: DiskSpec) -> None:
        """Plug in a disk another guest let go of; it becomes this domain's next disk."""
        if any(d.serial == disk.serial for d in self.spec.disks):
            raise HarnessError(f"{self.label} already has a disk with serial {disk.serial}")
        self.spec = replace(self.spec, disks=(*self.spec.disks, disk))
        self.attach_disk(disk.serial)

    def mark(self, attributes: dict[str, str]) -> None:
        """Put the lab's metadata element (`lab cleanup` and `lab ssh` read it) on the running domain."""
        element = ET.Element("run", {**attributes, **self.spec.metadata})
        self._running().setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ET.tostring(element, "unicode"),
                                    "lab", LAB_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self._remember()

    def destroy(self) -> None:
        if self._dom is not None:
            destroy_domain(self._dom)
            self._dom = None
        if self._console_stream is not None:
            self._console_stream.stop()
            self._console_stream = None

    def _lookup(self) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(self.spec.name)
        except libvirt.libvirtError:
            return None

    def _running(self) -> libvirt.virDomain:
        if self._dom is None:
            raise HarnessError(f"{self.label}: not started")
        return self._dom
