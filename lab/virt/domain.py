"""Typed description of a lab guest, rendered to libvirt domain XML.

One pure function, `render_domain_xml`, turns a frozen `DomainSpec` into XML
through ElementTree: no string templates.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
LAB_NS = "https://atomic-lab.invalid/xmlns/run/1"
ET.register_namespace("qemu", QEMU_NS)
ET.register_namespace("lab", LAB_NS)

# QEMU's user-mode NIC sits at a fixed PCI slot so it never collides with the
# devices libvirt places itself; the NIC between a run's guests (if it has several) at the next.
NIC_PCI_ADDR = "0x10"
PEER_PCI_ADDR = "0x11"


@dataclass(frozen=True)
class DiskSpec:
    """A virtio disk backed by a libvirt volume path."""

    path: str
    serial: str
    format: str = "qcow2"
    readonly: bool = False
    shareable: bool = False  # attached to several guests at once: raw, no host cache


@dataclass(frozen=True)
class PeerLink:
    """The NIC that joins a run's guests: a QEMU socket on a multicast group bound to 127.0.0.1, so
    the frames never leave the host's loopback (no bridge, no route)."""

    group: str  # 230.x.y.z
    port: int
    mac: str


@dataclass(frozen=True)
class KernelBoot:
    """Direct kernel boot: the host hands QEMU a kernel and initrd."""

    kernel: str
    initrd: str
    cmdline: str


@dataclass(frozen=True)
class DomainSpec:
    name: str
    run_id: str
    domain_type: str  # "kvm", "qemu" (TCG) or "test"
    memory_mib: int
    vcpus: int
    disks: tuple[DiskSpec, ...]
    console_path: str
    ssh_port: int  # 0: QEMU chooses and binds a free port (lab.virt.hypervisor.forwarded_ssh_port)
    kernel_boot: KernelBoot | None = None  # None: firmware + the disk's bootloader
    console_stream: bool = False  # a pty read through libvirt (remote hosts), instead of a file QEMU writes
    machine: str = "pc"
    peer: PeerLink | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    outbound: bool = False  # the user-mode NIC reaches the host and beyond (restrict=off); SSH is forwarded either way


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _os(root: ET.Element, spec: DomainSpec) -> None:
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=spec.machine)
    if spec.kernel_boot:
        _sub(os_el, "kernel", spec.kernel_boot.kernel)
        _sub(os_el, "initrd", spec.kernel_boot.initrd)
        _sub(os_el, "cmdline", spec.kernel_boot.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")
        _sub(os_el, "bios", useserial="yes")  # SeaBIOS messages on the serial console


def _disk(parent: ET.Element, disk: DiskSpec, index: int) -> ET.Element:
    element = _sub(parent, "disk", type="file", device="disk")
    if disk.shareable:
        _sub(element, "driver", name="qemu", type="raw", cache="none")
    else:
        _sub(element, "driver", name="qemu", type=disk.format, discard="unmap")
    _sub(element, "source", file=disk.path)
    _sub(element, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
    _sub(element, "serial", disk.serial)
    if disk.readonly:
        _sub(element, "readonly")
    if disk.shareable:
        _sub(element, "shareable")
    return element


def disk_index(spec: DomainSpec, serial: str) -> int:
    """Where the disk with this serial stands among the domain's disks (its target: vda, vdb, ...)."""
    for index, disk in enumerate(spec.disks):
        if disk.serial == serial:
            return index
    raise KeyError(f"{spec.name} has no disk with serial {serial!r}")


def render_disk_xml(spec: DomainSpec, serial: str) -> str:
    """The <disk> element of the disk with this serial, as given to libvirt (for detaching it)."""
    index = disk_index(spec, serial)
    return ET.tostring(_disk(ET.Element("devices"), spec.disks[index], index), encoding="unicode")


def _metadata(root: ET.Element, spec: DomainSpec) -> None:
    metadata = _sub(root, "metadata")
    _sub(metadata, f"{{{LAB_NS}}}run", id=spec.run_id, **spec.metadata)


def _netdev(spec: DomainSpec) -> str:
    """QEMU's user-mode NIC. restrict=on: the guest reaches neither the host (10.0.2.2 is the host's loopback)
    nor anything beyond; the forwarded SSH port works all the same."""
    restrict = "off" if spec.outbound else "on"
    return f"user,id=labnet0,restrict={restrict},hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22"


def _peer_args(link: PeerLink) -> tuple[str, str]:
    """-netdev and -device of the NIC between guests."""
    return (f"socket,id=labpeer0,mcast={link.group}:{link.port},localaddr=127.0.0.1",
            f"virtio-net-pci,netdev=labpeer0,mac={link.mac},addr={PEER_PCI_ADDR},romfile=")


def _user_net(root: ET.Element, spec: DomainSpec) -> None:
    """User-mode NIC with SSH forwarded from 127.0.0.1 only.

    libvirt 9.0 has no port forward for <interface type='user'>, so the NIC is
    passed to QEMU directly.
    """
    cmdline = _sub(root, f"{{{QEMU_NS}}}commandline")
    netdev = _netdev(spec)
    device = f"virtio-net-pci,netdev=labnet0,addr={NIC_PCI_ADDR},romfile="  # no iPXE ROM: disks boot
    args = ["-netdev", netdev, "-device", device]
    if spec.peer:
        peer_netdev, peer_device = _peer_args(spec.peer)
        args += ["-netdev", peer_netdev, "-device", peer_device]
    for arg in args:
        _sub(cmdline, f"{{{QEMU_NS}}}arg", value=arg)


def render_domain_xml(spec: DomainSpec) -> str:
    root = ET.Element("domain", type=spec.domain_type)
    _sub(root, "name", spec.name)
    _metadata(root, spec)
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus))
    _os(root, spec)
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.domain_type == "kvm":
        _sub(root, "cpu", mode="host-passthrough")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "destroy")  # the lab powers it on again: see lab.machine.guest_domain
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    for index, disk in enumerate(spec.disks):
        _disk(devices, disk, index)
    _serial(_sub(devices, "serial", type="pty"), spec)
    _sub(devices, "rng", model="virtio").append(_backend_random())
    _sub(devices, "memballoon", model="none")
    if spec.domain_type != "test":
        _user_net(root, spec)
    return ET.tostring(root, encoding="unicode")


def _serial(serial: ET.Element, spec: DomainSpec) -> None:
    """The serial console: a pty (`lab console RUN -i` types into GRUB or an emergency shell through it)
    whose output QEMU also appends to the run's console file; a remote guest's is read through libvirt
    instead (its host's files are out of reach)."""
    serial.attrib = {"type": "pty"}
    for child in list(serial):
        if child.tag in ("source", "log"):  # a saved guest's: its old file, or the pty it had then
            serial.remove(child)
    if not spec.console_stream:
        _sub(serial, "log", file=spec.console_path, append="on")
    if serial.find("target") is None:
        _sub(serial, "target", port="0")


def _backend_random() -> ET.Element:
    backend = ET.Element("backend", model="random")
    backend.text = "/dev/urandom"
    return backend


def retarget_saved_xml(saved_xml: str, spec: DomainSpec) -> str:
    """A saved guest's domain XML made this machine's: name, fresh uuid, run metadata, disk files
    (matched by serial; backing chains left for libvirt to probe), console file and SSH port."""
    root = ET.fromstring(saved_xml)
    _text(root, "name").text = spec.name
    _text(root, "uuid").text = str(uuid.uuid4())
    metadata = root.find("metadata")
    if metadata is not None:
        root.remove(metadata)
    _metadata(root, spec)
    paths = {disk.serial: disk.path for disk in spec.disks}
    for disk in root.iterfind("devices/disk"):
        serial = disk.findtext("serial")
        if serial not in paths:
            raise ValueError(f"saved guest has a disk with serial {serial!r} that {spec.name} lacks")
        _text(disk, "source").set("file", paths[serial])
        for chain in disk.findall("backingStore"):
            disk.remove(chain)
    _text(root, "on_reboot").text = "destroy"  # saved before reboots were power cycles
    devices = _text(root, "devices")
    for port in devices.findall("serial"):
        _serial(port, spec)
    for console in devices.findall("console"):  # the serial's mirror: libvirt adds it again
        devices.remove(console)
    args = root.findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")
    netdevs = [a for a in args if a.get("value", "").startswith("user,id=labnet0,")]
    if len(netdevs) != 1:
        raise ValueError("saved guest has no lab user-mode NIC to forward SSH to")
    netdevs[0].set("value", _netdev(spec))
    _retarget_peer(args, spec)
    return ET.tostring(root, encoding="unicode")


def _retarget_peer(args: list[ET.Element], spec: DomainSpec) -> None:
    """The saved guest's NIC between guests, put on this run's group and given this machine's MAC."""
    netdevs = [a for a in args if a.get("value", "").startswith("socket,id=labpeer0,")]
    devices = [a for a in args if "netdev=labpeer0," in a.get("value", "")]
    if spec.peer is None:
        if netdevs:
            raise ValueError("saved guest has a NIC between guests that this machine has not")
        return
    if len(netdevs) != 1 or len(devices) != 1:
        raise ValueError("saved guest has no NIC between guests")
    peer_netdev, peer_device = _peer_args(spec.peer)
    netdevs[0].set("value", peer_netdev)
    devices[0].set("value", peer_device)


def _text(parent: ET.Element, path: str) -> ET.Element:
    element = parent.find(path)
    if element is None:
        raise ValueError(f"saved domain XML has no <{path}>")
    return element


def render_probe_xml(name: str, kernel_path: str, console_path: str | None) -> str:
    """A tiny KVM domain that boots `kernel_path` to no root: whether KVM runs a kernel here at all."""
    root = ET.Element("domain", type="kvm")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory", unit="MiB").text = "256"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "kernel").text = kernel_path
    ET.SubElement(os_el, "cmdline").text = "console=ttyS0 root=/dev/lab-no-such-disk"
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    ET.SubElement(root, "cpu", mode="host-passthrough")
    devices = ET.SubElement(root, "devices")
    if console_path is None:
        ET.SubElement(devices, "serial", type="pty")
    else:
        ET.SubElement(ET.SubElement(devices, "serial", type="file"), "source", path=console_path)
    return ET.tostring(root, encoding="unicode")
