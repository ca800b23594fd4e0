"""One lab guest's libvirt domain: start, save and restore, reset, keys, disks, metadata, destroy.

The Machine (lab.machine) holds one and speaks to the guest; this is the hypervisor's side only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import libvirt

from lab.console import ConsoleStream
from lab.domain import LAB_NS, DiskSpec, DomainSpec, render_disk_xml, render_domain_xml
from lab.errors import HarnessError
from lab.hypervisor import create_domain, destroy_domain


class GuestDomain:
    def __init__(self, spec: DomainSpec, conn: libvirt.virConnect, *, autodestroy: bool = True) -> None:
        self.spec, self.conn, self.autodestroy = spec, conn, autodestroy
        self.label = spec.name.rsplit("-", 1)[-1]
        self._dom: libvirt.virDomain | None = None
        self._console_stream: ConsoleStream | None = None  # copies a remote guest's console into its file

    def start(self) -> None:
        """Create the domain; returns at once."""
        flags = libvirt.VIR_DOMAIN_START_AUTODESTROY if self.autodestroy else 0
        try:
            self._dom, self._console_stream = create_domain(
                self.conn, render_domain_xml(self.spec), flags,
                Path(self.spec.console_path) if self.spec.console_stream else None)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"{self.label}: libvirt refused to start {self.spec.name}: "
                               f"{exc.get_error_message()}") from exc

    def is_running(self) -> bool:
        try:
            return bool(self._dom and self._dom.isActive())
        except libvirt.libvirtError:
            return False

    def save(self, path: Path) -> None:
        """Save the running guest to `path`; the domain is gone afterwards."""
        try:
            self._running().save(str(path))
        except libvirt.libvirtError as exc:
            raise HarnessError(f"{self.label}: libvirt could not save the guest: {exc.get_error_message()}") from exc
        self._dom = None

    def restore(self, save_file: Path) -> None:
        try:
            self.conn.restoreFlags(str(save_file), None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"{self.label}: libvirt could not restore {save_file}: "
                               f"{exc.get_error_message()}") from exc
        finally:  # whatever libvirt made, even if a signal cut in, so that destroy() removes it
            self._dom = self._lookup()
        if self._dom is None:
            raise HarnessError(f"{self.label}: libvirt restored {save_file} but {self.spec.name} is not there")

    def reset(self) -> None:
        """The reset button."""
        self._running().reset(0)

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

    def attach_disk(self, serial: str) -> None:
        """Plug in a disk of this domain's spec (one `detach_disk` took away, or a restore left out)."""
        self._running().attachDeviceFlags(render_disk_xml(self.spec, serial), libvirt.VIR_DOMAIN_AFFECT_LIVE)

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
