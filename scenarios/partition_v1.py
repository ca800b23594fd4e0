"""partition-v1: the first production partition scheme of an Atomic-host operator.

atomic-host-operator-blog.txt, "Disk partition scheme for RHEL Atomic Hosts": root grown
with ROOT_SIZE, a docker thin pool from the rest of the root VG, and /var/srv on a
second disk in its own VG. Sizes are scaled to the lab's 10 GiB image disk.

The /var/srv VG once came up inactive after some reboots (its PV seen by the initramfs first), and the
boot fell into emergency mode; nightly reboots `reboots=8` times, where that race showed within a few.
"""

from __future__ import annotations

import json

from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, root_vg
from lab.machine import Machine
from lab.scenario import Disk, parse_size, scenario

SRV_DISK = "/dev/disk/by-id/virtio-srv"


@scenario(
    "partition-v1",
    "Partition scheme v1: ROOT_SIZE-grown xfs root, docker-pool thin pool in atomicos, /var/srv on its own disk+VG",
    image="lab-atomic",
    disks=(Disk("2G", "srv"),),
    params={"root_size": "4G", "data_size": "40%FREE", "reboots": 1},
    tags=("storage",),
    timeout=1200,
)
def partition_v1(lab: ScenarioContext) -> None:
    vm, root_size = lab.machine, lab.params["root_size"]
    vg, root = root_vg(lab.profile), lab.profile.root_lv or "root"

    with lab.step(f"grow the root LV and its xfs to ROOT_SIZE={root_size}, carve docker-pool"):
        if lab.profile.storage_setup:
            tool = lab.profile.storage_setup
            vm.succeed(f"echo ROOT_SIZE={root_size} >> /etc/sysconfig/{tool} && {tool}")
        else:  # what docker-storage-setup does with ROOT_SIZE and the default DATA_SIZE
            vm.succeed(f"lvextend -L {root_size} {vg}/{root} && xfs_growfs /")
            create_thin_pool(vm, vg, lab.params["data_size"])
    pool = ThinPool(vg, "docker-pool")  # the name docker-storage-setup gives it too

    with lab.step("the srv disk in its own VG, xfs at /var/srv through fstab"):
        vm.succeed(f"parted -s {SRV_DISK} mklabel msdos mkpart primary 1MiB 100% set 1 lvm on && udevadm settle")
        vm.succeed(f"pvcreate -y {SRV_DISK}-part1 && vgcreate srv {SRV_DISK}-part1")
        vm.succeed("lvcreate -y -l 100%FREE -n srv srv")
        vm.succeed("mkfs.xfs -q /dev/srv/srv && mkdir -p /var/srv"
                   " && echo '/dev/mapper/srv-srv /var/srv xfs defaults 0 0' >> /etc/fstab && mount /var/srv")

    with lab.step("docker starts on devicemapper with dm.thinpooldev"):
        vm.write_file("/etc/docker/daemon.json", json.dumps({"storage-driver": "devicemapper", "storage-opts": [
            f"dm.thinpooldev={pool.device}", "dm.use_deferred_removal=true"]}))
        vm.succeed("systemctl enable --now docker", timeout=300)

    with lab.step("the layout is as configured"):
        check_layout(lab, vm, pool, root, root_size, "before-reboot")

    for boot in range(1, lab.params["reboots"] + 1):
        with lab.step(f"everything is the same after reboot {boot}"):
            vm.reboot()
            vm.wait_for_unit("docker.service", timeout=300)
            check_layout(lab, vm, pool, root, root_size, f"after-reboot-{boot}")


def check_layout(lab: ScenarioContext, vm: Machine, pool: ThinPool, root: str, root_size: str, when: str) -> None:
    vg = pool.vg
    lab.evidence(f"layout-{when}.txt", vm.succeed("lsblk; echo; vgs; echo; lvs -a; echo; findmnt /var/srv"))
    assert vm.succeed("vgs --noheadings -o vg_name").split() == sorted([vg, "srv"])
    assert vm.succeed(f"pvs --noheadings -o vg_name {SRV_DISK}-part1").strip() == "srv"
    assert vm.succeed(f"lvs --noheadings -o lv_attr {pool.lv}").strip().startswith("t"), "not a thin pool"
    geometry = vm.succeed("xfs_info / | sed -n 's/^data *= *bsize=\\([0-9]*\\) *blocks=\\([0-9]*\\).*/\\1 \\2/p'")
    bsize, blocks = (int(x) for x in geometry.split())
    assert bsize * blocks == parse_size(root_size), f"xfs root is {bsize * blocks} bytes, not {root_size}"
    vm.require_mount("/var/srv", "/dev/mapper/srv-srv", "xfs")
    info = vm.succeed("docker info 2>&1")
    lab.evidence(f"docker-info-{when}.txt", info)
    assert "Storage Driver: devicemapper" in info, info
    assert f"Pool Name: {pool.dm_name}" in info, info
    space = {key: value for key, _, value in (line.strip().partition(": ") for line in info.splitlines())
             if key.startswith("Data Space")}
    assert set(space) == {"Data Space Used", "Data Space Total", "Data Space Available"}, space
    lab.record(f"docker_data_space_{when.replace('-', '_')}", space)
    assert vm.succeed("lvs --noheadings -o lv_active srv/srv").strip() == "active"
