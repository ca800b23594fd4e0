"""pv-lost: a disk of the root volume group disappears; the VG is repaired with vgreduce.

fedora-atomic-wiki.txt, "Remove lost physical device from a group": the field saw "Device for PV
<uuid> not found or rejected by a filter" and ran `vgreduce --removemissing`. Here VG atomicos
spans the root disk and a second virtio disk holding its own LV; the second disk is unplugged
from the running guest through libvirt. Running on, root is fine and LVM warns (this LVM's
wording, recorded next to the field's). Rebooting without it does not boot: bookworm's initramfs
activates a VG only once all its PVs are there, so root never appears. With the disk plugged back
the host boots; unplugged again it is removed from the VG (`--force`: an LV lived on it), and then
the host boots without it.
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.lvm import root_vg, vg_field
from lab.machine import Machine
from lab.scenario import Disk, reproduced, scenario

SERIAL = "extra"
DISK = f"/dev/disk/by-id/virtio-{SERIAL}"
FIELD_WORDING = "Device for PV {uuid} not found or rejected by a filter"
NO_ROOT = r"ALERT!  /dev/mapper/{}-root does not exist"


@scenario(
    "pv-lost",
    "A PV of the root VG disappears (unplugged live, then a reboot without it); root survives, "
    "vgreduce --removemissing repairs the VG (Fedora Atomic wiki, \"Remove lost physical device\")",
    image="lab-atomic",
    memory=1024,
    disks=(Disk("1G", SERIAL),),
    tags=("storage", "catalog"),
    covers=(
        reproduced("pv-lost", "LVM 2.03 warns `Couldn't find device with uuid`; the field's wording is "
                              "recorded beside it"),
    ),
    timeout=1200,
)
def pv_lost(lab: ScenarioContext) -> None:
    vm, vg = lab.machine, root_vg(lab.profile)
    with lab.step(f"VG {vg} extended over a second disk, an LV on it; data on root"):
        vm.succeed(f"pvcreate -y {DISK} && vgextend {vg} {DISK}")
        vm.succeed(f"lvcreate -y -L 512M -n data {vg} {DISK} && mkfs.xfs -q /dev/{vg}/data")
        vm.succeed("head -c 8M /dev/urandom > /root/keep && sha256sum /root/keep > /root/keep.sha256")
        uuid = vm.succeed(f"pvs --noheadings -o pv_uuid {DISK}").strip()
        lab.record("lost_pv_uuid", uuid)
        lab.evidence("before/lvs.txt", vm.succeed("lvs -a -o +devices"))

    with lab.step("the disk is unplugged from the running guest: LVM reports the PV missing"):
        vm.detach_disk(SERIAL)
        vm.wait_until_succeeds(f"! test -e {DISK}", timeout=120)
        pvs = vm.execute("pvs 2>&1").stdout
        lab.evidence("unplugged/pvs.txt", pvs)
        assert f"WARNING: Couldn't find device with uuid {uuid}." in pvs, pvs
        assert f"WARNING: VG {vg} is missing PV {uuid}" in pvs, pvs
        lab.record("field_wording", FIELD_WORDING.format(uuid=uuid))
        vm.succeed("sha256sum -c /root/keep.sha256")

    with lab.step("reboot without the disk: the initramfs never finds root"):
        start = vm.get_console_size()
        vm.start_reboot()
        lab.record("initramfs", vm.wait_for_console(NO_ROOT.format(vg), since=start).strip())
        lab.evidence("rebooted/console.txt", vm.get_console_text(start))

    with lab.step("the disk plugged back and the host reset: it boots, the VG is whole"):
        vm.attach_disk(SERIAL)
        vm.reset()
        assert vg_field(vm, vg, "vg_attr")[3] == "-"
        vm.succeed("sha256sum -c /root/keep.sha256")

    with lab.step("unplugged again while running"):
        vm.detach_disk(SERIAL)
        vm.wait_until_succeeds(f"! test -e {DISK}", timeout=120)

    _repair(lab, vm, vg)


def _repair(lab: ScenarioContext, vm: Machine, vg: str) -> None:
    """The wiki's repair of a VG that lost a PV on which an LV lived, then a boot without that disk."""
    with lab.step("the wiki's dry run first: vgreduce --test --removemissing --force changes nothing"):
        tried = vm.succeed(f"vgreduce --test --removemissing --force {vg} 2>&1")
        lab.evidence("repair/vgreduce-test.txt", tried)
        assert "TEST MODE: Metadata will NOT be updated and volumes will not be (de)activated." in tried, tried
        assert f"WARNING: Removing partial LV {vg}/data." in tried, tried
        vm.succeed(f"lvs {vg}/data")  # still there: the test wrote nothing

    with lab.step("vgreduce --removemissing: refused while an LV lives on the lost PV, then --force"):
        out = vm.fail(f"vgreduce --removemissing {vg}", "WARNING: Partial LV data needs to be repaired or removed.")
        lab.evidence("repair/vgreduce.txt", out)
        forced = vm.succeed(f"vgreduce --removemissing --force {vg} 2>&1")
        lab.evidence("repair/vgreduce-force.txt", forced)
        assert f"WARNING: Removing partial LV {vg}/data." in forced, forced
        assert f"Wrote out consistent volume group {vg}." in forced, forced

    with lab.step("the VG is consistent again: vgck clean, no missing PV; it boots without the disk"):
        check = vm.succeed(f"vgck {vg} 2>&1")
        assert "WARNING" not in check, check
        assert vm.succeed(f"vgs --noheadings -o vg_attr,pv_count {vg}").split()[1] == "1"
        assert "missing" not in vm.succeed("pvs --noheadings -o pv_name,pv_missing 2>&1")
        vm.fail(f"lvs {vg}/data", f'Failed to find logical volume "{vg}/data"')
        vm.reboot()
        vm.succeed("sha256sum -c /root/keep.sha256")
        assert vg_field(vm, vg, "vg_attr")[3] == "-"
