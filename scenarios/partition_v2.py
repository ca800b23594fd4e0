"""partition-v2: the reworked scheme — one VG over two disks, srv and swap LVs, a thin pool.

atomic-host-operator-blog.txt, "[UPDATE] Disk partition scheme for RHEL Atomic Hosts" and its
Ansible role: vgextend atomicos with the second disk, root and srv LVs grown, "workaround for
XFS bug (only grows if mounted)", a swap LV, and /etc/lvm/archive filling up until
`archive = 0`. Sizes are scaled to lab disks.
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.lvm import create_thin_pool, lv_sizes, root_vg, vg_field, vg_names
from lab.machine import Machine
from lab.scenario import Disk, parse_size, partly, reproduced, scenario

EXTRA = "/dev/disk/by-id/virtio-extra"


@scenario(
    "partition-v2",
    "Partition scheme v2: atomicos over two PVs, root/srv xfs grown (only when mounted), swap LV, thin pool",
    image="lab-atomic",
    disks=(Disk("4G", "extra"),),
    params={"root_size": "4G", "srv_size": "1G", "swap_size": "512M"},
    tags=("storage",),
    covers=(
        reproduced("partition-v2"),
        reproduced("xfs-grows-mounted"),
        reproduced("lvm-archive-growth"),
        partly("swap-lv", "the setup is not run twice, so the check that keeps it from making the swap again is not "
                          "exercised"),
    ),
    timeout=1200,
)
def partition_v2(lab: ScenarioContext) -> None:
    vm, p = lab.machine, lab.params
    vg = root_vg(lab.profile)

    with lab.step("extend atomicos with the second disk"):
        archives_before = archive_count(vm)
        vm.succeed(f"pvcreate -y {EXTRA} && vgextend {vg} {EXTRA}")

    with lab.step(f"grow root to {p['root_size']} and its xfs"):
        vm.succeed(f"lvextend -L {p['root_size']} {vg}/root && xfs_growfs /")

    with lab.step("xfs grows only when mounted"):
        half = parse_size(p["srv_size"]) // 2
        vm.succeed(f"lvcreate -y -L {half}b -n srv {vg} && mkfs.xfs -q /dev/{vg}/srv")
        vm.succeed(f"lvextend -L {p['srv_size']} {vg}/srv")
        refused = vm.fail(f"xfs_growfs /dev/{vg}/srv", f"/dev/{vg}/srv is not a mounted XFS filesystem")
        lab.evidence("xfs-growfs-unmounted.txt", refused)
        vm.succeed(f"mkdir -p /var/srv && echo '/dev/mapper/{vg}-srv /var/srv xfs defaults 0 0' >> /etc/fstab"
                   " && mount /var/srv")
        grown = vm.succeed("xfs_growfs /var/srv")
        lab.evidence("xfs-growfs-mounted.txt", grown)
        assert "data blocks changed from" in grown, grown

    with lab.step("a swap LV, enabled through fstab"):
        vm.succeed(f"lvcreate -y -L {p['swap_size']} -n swap {vg} && mkswap /dev/{vg}/swap"
                   f" && echo '/dev/mapper/{vg}-swap none swap sw 0 0' >> /etc/fstab && swapon -a")

    with lab.step("the thin pool from the remainder"):
        create_thin_pool(vm, vg, "90%FREE")

    with lab.step("every reconfiguration added LVM metadata archives; archive = 0 stops it"):
        grown_to = archive_count(vm)
        lab.record("lvm_archive_files", {"before": archives_before, "after_reconfiguration": grown_to})
        assert grown_to >= archives_before + 6, f"archives went from {archives_before} to {grown_to}"
        vm.succeed("sed -i 's/^\\(\\s*\\)# archive = 1$/\\1archive = 0/' /etc/lvm/lvm.conf")
        assert vm.succeed("lvmconfig backup/archive").strip() == "archive=0"
        vm.succeed(f"lvchange --addtag lab-reconfigured {vg}/srv && lvextend -l +1 {vg}/docker-pool")
        assert archive_count(vm) == grown_to, "archive = 0 should stop new archive files"
        lab.evidence("lvm-archive.txt", vm.succeed("ls -l /etc/lvm/archive"))

    with lab.step("the layout is as configured"):
        check_layout(lab, vm, vg, "before-reboot")

    with lab.step("and survives a reboot"):
        vm.reboot()
        check_layout(lab, vm, vg, "after-reboot")


def archive_count(vm: Machine) -> int:
    # The directory appears with the first archive: none yet on a fresh image.
    return int(vm.succeed("{ find /etc/lvm/archive -name '*.vg' 2>/dev/null || true; } | wc -l"))


def check_layout(lab: ScenarioContext, vm: Machine, vg: str, when: str) -> None:
    p = lab.params
    lab.evidence(f"layout-{when}.txt", vm.succeed("lsblk; echo; pvs; echo; vgs; echo; lvs -a; echo; swapon --show"))
    assert vg_names(vm) == [vg], "one VG only"
    assert int(vg_field(vm, vg, "pv_count")) == 2
    sizes = lv_sizes(vm, vg)
    assert sizes["root"] == parse_size(p["root_size"]), sizes
    assert sizes["srv"] == parse_size(p["srv_size"]), sizes
    assert sizes["swap"] == parse_size(p["swap_size"]), sizes
    assert "docker-pool" in sizes, sizes
    vm.require_mount("/var/srv", f"/dev/mapper/{vg}-srv", "xfs")
    swap = vm.succeed(f"readlink -f /dev/{vg}/swap").strip()
    assert vm.succeed("swapon --noheadings --show=NAME").split() == [swap], "swap LV not active"
