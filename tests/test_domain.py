import dataclasses
import xml.etree.ElementTree as ET

import pytest

from lab.virt.domain import (
    LAB_NS,
    QEMU_NS,
    DiskSpec,
    DomainSpec,
    KernelBoot,
    PeerLink,
    render_disk_xml,
    render_domain_xml,
    retarget_saved_xml,
)


def _spec(**overrides: object) -> DomainSpec:
    values: dict[str, object] = dict(
        name="lab-run-0123abcd-vm1", run_id="0123abcd", domain_type="qemu", memory_mib=768, vcpus=2,
        disks=(DiskSpec("/pool/root.qcow2", "lab-root"), DiskSpec("/pool/d1.qcow2", "data1"),
               DiskSpec("/pool/seed.iso", "cidata", format="raw", readonly=True)),
        console_path="/runs/x/console.log", ssh_port=40022,
        kernel_boot=KernelBoot("/pool/k", "/pool/i", "root=LABEL=root console=ttyS0"),
        metadata={"scenario": "smoke"},
    )
    values.update(overrides)
    return DomainSpec(**values)  # type: ignore[arg-type]


def test_disks_are_virtio_in_order_with_serials_and_a_read_only_seed() -> None:
    root = ET.fromstring(render_domain_xml(_spec()))
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb", "vdc"]  # type: ignore[union-attr]
    assert {d.find("target").get("bus") for d in disks} == {"virtio"}  # type: ignore[union-attr]
    assert [d.findtext("serial") for d in disks] == ["lab-root", "data1", "cidata"]
    assert [d.find("readonly") is not None for d in disks] == [False, False, True]
    assert disks[2].find("driver").get("type") == "raw"  # type: ignore[union-attr]


def test_a_disk_to_detach_is_rendered_as_the_domain_has_it() -> None:
    in_domain = ET.fromstring(render_domain_xml(_spec())).findall("devices/disk")[1]
    alone = ET.fromstring(render_disk_xml(_spec(), "data1"))
    assert ET.tostring(alone) == ET.tostring(in_domain)
    with pytest.raises(KeyError, match="no disk with serial 'nope'"):
        render_disk_xml(_spec(), "nope")


def test_ssh_is_forwarded_from_loopback_only() -> None:
    root = ET.fromstring(render_domain_xml(_spec()))
    args = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
    netdev = args[args.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in netdev
    assert args[args.index("-device") + 1].startswith("virtio-net-pci,netdev=labnet0")
    assert root.find("devices/interface") is None


def test_the_console_is_a_pty_logged_to_a_file_and_metadata_carries_the_run_id() -> None:
    root = ET.fromstring(render_domain_xml(_spec()))
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "pty" and serial.find("source") is None
    assert serial.find("log").attrib == {"file": "/runs/x/console.log", "append": "on"}  # type: ignore[union-attr]
    run = root.find(f"metadata/{{{LAB_NS}}}run")
    assert run is not None and run.get("id") == "0123abcd" and run.get("scenario") == "smoke"


def test_a_remote_guests_console_is_a_pty_read_through_libvirt() -> None:
    serial = ET.fromstring(render_domain_xml(_spec(console_stream=True))).find("devices/serial")
    assert serial is not None and serial.get("type") == "pty" and serial.find("source") is None
    assert serial.find("log") is None  # its host's file: the lab copies the stream instead


def test_kernel_boot_versus_firmware_boot() -> None:
    direct = ET.fromstring(render_domain_xml(_spec()))
    assert direct.findtext("os/cmdline") == "root=LABEL=root console=ttyS0"
    assert direct.find("os/boot") is None
    firmware = ET.fromstring(render_domain_xml(_spec(kernel_boot=None)))
    assert firmware.find("os/kernel") is None
    assert firmware.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    assert firmware.find("os/bios").get("useserial") == "yes"  # type: ignore[union-attr]


def test_tcg_guest_type_and_acpi() -> None:
    root = ET.fromstring(render_domain_xml(_spec()))
    assert root.get("type") == "qemu"
    assert root.find("features/acpi") is not None
    assert root.find("cpu") is None  # no host-passthrough under TCG
    assert root.findtext("memory") == "768" and root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]


def _saved_xml() -> str:
    """What libvirt keeps in a save file: the live XML, with a uuid and the disks' backing chains."""
    root = ET.fromstring(render_domain_xml(_spec(name="lab-run-aaaa0000-vm1", run_id="aaaa0000", disks=(
        DiskSpec("/pool/warm-root.qcow2", "lab-root"), DiskSpec("/pool/warm-seed.iso", "cidata", "raw", True)))))
    ET.SubElement(root, "uuid").text = "11111111-2222-3333-4444-555555555555"
    root.find("on_reboot").text = "restart"  # type: ignore[union-attr]  # saved before reboots were power cycles
    chain = ET.SubElement(root.find("devices/disk"), "backingStore", type="file")  # type: ignore[arg-type]
    ET.SubElement(chain, "source", file="/pool/image-base.qcow2")
    return ET.tostring(root, encoding="unicode")


def test_a_saved_guest_is_made_this_machines_own() -> None:
    spec = _spec(disks=(DiskSpec("/pool/run-root.qcow2", "lab-root"),
                        DiskSpec("/pool/warm-seed.iso", "cidata", "raw", True), DiskSpec("/pool/d1.qcow2", "data1")))
    root = ET.fromstring(retarget_saved_xml(_saved_xml(), spec))
    assert root.findtext("name") == "lab-run-0123abcd-vm1"
    assert root.findtext("uuid") not in (None, "11111111-2222-3333-4444-555555555555")
    disks = root.findall("devices/disk")
    assert [(d.findtext("serial"), d.find("source").get("file")) for d in disks] == [  # type: ignore[union-attr]
        ("lab-root", "/pool/run-root.qcow2"), ("cidata", "/pool/warm-seed.iso")]  # data1 is hot-plugged later
    assert root.find("devices/disk/backingStore") is None  # libvirt probes the new chain
    assert root.findtext("on_reboot") == "destroy"  # the lab powers it on again (lab.machine.guest_domain)
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "pty" and serial.find("source") is None
    assert serial.find("log").get("file") == "/runs/x/console.log"  # type: ignore[union-attr]
    assert serial.find("target") is not None and root.find("devices/console") is None
    runs = root.findall(f"metadata/{{{LAB_NS}}}run")
    assert [r.get("id") for r in runs] == ["0123abcd"]
    args = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
    assert "user,id=labnet0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22" in args  # cut off from the host


@pytest.mark.parametrize("saved", [
    # saved by an older lab: a file
    "<serial type='file'><source path='/runs/old/console.log' append='on'/><target port='0'/></serial>"
    "<console type='file'><source path='/runs/old/console.log'/><target type='serial' port='0'/></console>",
    # libvirt's live XML of a pty with its log: the pty it had then, the old run's file
    "<serial type='pty'><source path='/dev/pts/3'/><log file='/runs/old/console.log' append='on'/>"
    "<target type='isa-serial' port='0'><model name='isa-serial'/></target><alias name='serial0'/></serial>"
    "<console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/><target type='serial' port='0'/></console>"])
def test_a_saved_guests_console_becomes_this_runs_pty_and_file(saved: str) -> None:
    root = ET.fromstring(_saved_xml())
    devices = root.find("devices")
    assert devices is not None
    for old in devices.findall("serial"):
        devices.remove(old)
    devices.extend(ET.fromstring(f"<d>{saved}</d>"))
    spec = _spec(disks=(DiskSpec("/pool/run-root.qcow2", "lab-root"), DiskSpec("/pool/warm-seed.iso", "cidata")))
    serial = ET.fromstring(retarget_saved_xml(ET.tostring(root, encoding="unicode"), spec)).find("devices/serial")
    assert serial is not None and serial.get("type") == "pty" and serial.find("source") is None
    assert serial.find("log").attrib == {"file": "/runs/x/console.log", "append": "on"}  # type: ignore[union-attr]
    assert serial.find("target").get("port") == "0"  # type: ignore[union-attr]


def test_a_guest_reaches_out_only_when_its_scenario_says_so() -> None:
    def netdev(spec: DomainSpec) -> str:
        args = [a.get("value") or "" for a in ET.fromstring(render_domain_xml(spec)).iter(f"{{{QEMU_NS}}}arg")]
        return next(a for a in args if a.startswith("user,"))

    assert ",restrict=on," in netdev(_spec())
    assert ",restrict=off," in netdev(dataclasses.replace(_spec(), outbound=True))


def test_a_saved_guest_with_a_disk_the_machine_lacks_is_refused() -> None:
    spec = _spec(disks=(DiskSpec("/pool/run-root.qcow2", "lab-root"),))
    with pytest.raises(ValueError, match="serial 'cidata'"):
        retarget_saved_xml(_saved_xml(), spec)


PEER = PeerLink("230.1.2.3", 45000, "52:54:00:aa:bb:cc")


def test_the_nic_between_guests_is_a_multicast_socket_on_loopback() -> None:
    args = [a.get("value") for a in ET.fromstring(render_domain_xml(_spec(peer=PEER))).iter(f"{{{QEMU_NS}}}arg")]
    assert "socket,id=labpeer0,mcast=230.1.2.3:45000,localaddr=127.0.0.1" in args
    assert "virtio-net-pci,netdev=labpeer0,mac=52:54:00:aa:bb:cc,addr=0x11,romfile=" in args
    assert not any("labpeer0" in str(a) for a in ET.fromstring(render_domain_xml(_spec())).iter(f"{{{QEMU_NS}}}arg"))


def test_a_saved_guests_nic_between_guests_gets_this_runs_group_and_mac() -> None:
    spec = _spec(disks=(DiskSpec("/pool/run-root.qcow2", "lab-root"),
                        DiskSpec("/pool/warm-seed.iso", "cidata", "raw", True)), peer=PEER)
    root = ET.fromstring(_saved_xml())
    for arg in ("-netdev", "socket,id=labpeer0,mcast=230.9.9.9:1,localaddr=127.0.0.1",
                "-device", "virtio-net-pci,netdev=labpeer0,mac=52:54:00:00:00:01,addr=0x11,romfile="):
        ET.SubElement(root.find(f"{{{QEMU_NS}}}commandline"), f"{{{QEMU_NS}}}arg", value=arg)  # type: ignore[arg-type]
    saved = ET.tostring(root, encoding="unicode")
    args = [a.get("value") for a in ET.fromstring(retarget_saved_xml(saved, spec)).iter(f"{{{QEMU_NS}}}arg")]
    assert "socket,id=labpeer0,mcast=230.1.2.3:45000,localaddr=127.0.0.1" in args
    assert "virtio-net-pci,netdev=labpeer0,mac=52:54:00:aa:bb:cc,addr=0x11,romfile=" in args
    with pytest.raises(ValueError, match="no NIC between guests"):
        retarget_saved_xml(_saved_xml(), spec)  # saved without one: devices cannot change at a restore
    with pytest.raises(ValueError, match="that this machine has not"):
        retarget_saved_xml(saved, _spec(disks=spec.disks))


def test_a_shared_disk_is_raw_uncached_and_shareable() -> None:
    spec = _spec(disks=(DiskSpec("/pool/root.qcow2", "lab-root"), DiskSpec("/pool/s.raw", "shared", "raw",
                                                                          shareable=True)))
    disk = ET.fromstring(render_disk_xml(spec, "shared"))
    assert disk.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none"}  # type: ignore[union-attr]
    assert disk.find("shareable") is not None
