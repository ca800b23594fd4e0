"""thinpool-by-hand: the wiki's steps to set up docker's thin pool with LVM's own commands, and LVM's refusals.

fedora-atomic-wiki.txt, "Docker Image Storage - LVM Thinpool": `pvcreate /dev/vdb` may answer "Device
/dev/vdb excluded by a filter." — either a filter in lvm.conf, or "a partition or signature on the disk"
(fixed with `dd if=/dev/zero of=/dev/vdb bs=512 count=1`); then `vgcreate vg-docker /dev/vdb`, a thin pool
(container-storage-setup's log: "Thin pool volume with chunk size 512.00 KiB can address at most 126.50 TiB
of data.") and `lvs -a` with the pool's hidden volumes. Every line here is bookworm's LVM 2.03.16's own.
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import Disk, reproduced, scenario

SERIAL = "docker"
VG, POOL = "vg-docker", "docker-pool"
FILTER = 'devices {\n    filter = [ "a|^/dev/vda|", "r|.*|" ]\n}\n'
CHUNK = "Thin pool volume with chunk size 512.00 KiB can address at most 127.00 TiB of data."
FIELD_CHUNK = "Thin pool volume with chunk size 512.00 KiB can address at most 126.50 TiB of data."  # LVM 2.02


@scenario(
    "thinpool-by-hand",
    "the wiki's thin pool by hand: pvcreate refused by a filter and by a partition table, vgcreate, the pool's "
    "chunk-size line, lvs -a's hidden volumes (Fedora Atomic wiki)",
    image="lab-bookworm",
    memory=768,
    disks=(Disk("2G", SERIAL),),
    tags=("storage", "catalog"),
    covers=(
        reproduced("pvcreate-filter", "LVM 2.03 says `Cannot use /dev/vdb: device is rejected by filter config`; "
                                      "2.02's `Device /dev/vdb excluded by a filter.` is recorded beside it"),
        reproduced("pvcreate-signature", "LVM 2.03 names the cause: `device is partitioned`"),
        reproduced("thinpool-chunk-size", "LVM 2.03.16 says 127.00 TiB where the field's 2.02 said 126.50, and "
                                          "warns that zeroing with 512 KiB chunks slows provisioning"),
        reproduced("lvs-data-columns"),
    ),
    timeout=600,
)
def thinpool_by_hand(lab: ScenarioContext) -> None:
    vm = lab.machine
    dev = vm.succeed(f"readlink -f /dev/disk/by-id/virtio-{SERIAL}").strip()
    lab.evidence("lvmdiskscan.txt", vm.succeed("lvmdiskscan"))
    _filter(lab, vm, dev)
    _partitioned(lab, vm, dev)
    with lab.step(f"vgcreate {VG}; a thin pool with 512 KiB chunks: LVM says how much it can address"):
        vm.succeed(f"vgcreate {VG} {dev}")
        created = vm.succeed(f"lvcreate -y --type thin-pool -l 90%FREE --chunksize 512k -n {POOL} {VG} 2>&1")
        lab.evidence("lvcreate.txt", created)
        assert CHUNK in created, created
        lab.record("field_chunk_line", FIELD_CHUNK)
        assert f'Logical volume "{POOL}" created.' in created, created
    with lab.step("lvs -a: the pool with Data% and Meta%, its hidden _tdata, _tmeta and spare"):
        listed = vm.succeed(f"lvs -a --noheadings -o lv_name,lv_attr,data_percent,metadata_percent {VG}")
        lab.evidence("lvs-a.txt", vm.succeed(f"lvs -a {VG}"))
        rows = {line.split()[0]: line.split()[1:] for line in listed.splitlines() if line.strip()}
        assert rows[POOL][0].startswith("twi-a-t") and rows[POOL][1:] and float(rows[POOL][1]) == 0.0, rows
        assert rows[f"[{POOL}_tdata]"][0][0] == "T" and rows[f"[{POOL}_tmeta]"][0][0] == "e", rows
        assert rows["[lvol0_pmspare]"][0][0] == "e", rows


def _filter(lab: ScenarioContext, vm: Machine, dev: str) -> None:
    with lab.step("a filter in lvmlocal.conf: pvcreate refuses the disk; without it, it would not"):
        vm.write_file("/etc/lvm/lvmlocal.conf", FILTER)
        lab.evidence("lvmconfig-filter.txt", vm.succeed("lvmconfig devices/filter"))
        said = vm.fail(f"pvcreate {dev}", 5)
        lab.evidence("pvcreate-filtered.txt", said)
        assert f"Cannot use {dev}: device is rejected by filter config" in said, said
        lab.record("field_wording", f"Device {dev} excluded by a filter.")
        vm.succeed("rm /etc/lvm/lvmlocal.conf")


def _partitioned(lab: ScenarioContext, vm: Machine, dev: str) -> None:
    with lab.step("a partition table on the disk: pvcreate refuses it until its first sector is zeroed"):
        vm.succeed(f"parted -s {dev} mklabel msdos mkpart primary 1MiB 100% && udevadm settle")
        said = vm.fail(f"pvcreate {dev}", 5)
        lab.evidence("pvcreate-partitioned.txt", said)
        assert f"Cannot use {dev}: device is partitioned" in said, said
        vm.succeed(f"dd if=/dev/zero of={dev} bs=512 count=1 && blockdev --rereadpt {dev} && udevadm settle")
        created = vm.succeed(f"pvcreate {dev} 2>&1")
        assert f'Physical volume "{dev}" successfully created.' in created, created
