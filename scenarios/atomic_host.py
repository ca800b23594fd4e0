"""atomic-host: the lab-atomic image is laid out and equipped like an Atomic host."""

import json

from lab.context import ScenarioContext
from lab.lvm import lv_sizes, vg_free_bytes
from lab.scenario import reproduced, scenario


@scenario(
    "atomic-host",
    "Boot lab-atomic through GRUB; check the Atomic disk layout (VG atomicos, xfs root) and the engines",
    image="lab-atomic",
    memory=1024,
    tags=("smoke",),
    covers=(
        reproduced("atomic-root-layout"),
    ),
    timeout=600,
)
def atomic_host(lab: ScenarioContext) -> None:
    vm = lab.machine

    with lab.step("GRUB on the disk chose the kernel"):
        cmdline = vm.succeed("cat /proc/cmdline")
        assert "BOOT_IMAGE=/vmlinuz-" in cmdline, f"no BOOT_IMAGE from GRUB in {cmdline!r}"
        assert "root=/dev/mapper/atomicos-root" in cmdline

    with lab.step("vda1 is /boot, vda2 the PV of VG atomicos"):
        lab.evidence("lsblk.txt", vm.succeed("lsblk -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINTS"))
        disk = json.loads(vm.succeed("lsblk -J -b -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT /dev/vda"))
        parts = {p["name"]: p for p in disk["blockdevices"][0]["children"]}
        assert parts["vda1"]["fstype"] == "ext4" and parts["vda1"]["mountpoint"] == "/boot", parts
        assert parts["vda2"]["fstype"] == "LVM2_member", parts
        assert vm.succeed("pvs --noheadings -o vg_name /dev/vda2").strip() == "atomicos"

    with lab.step("LV root is xfs (ftype=1) at /, with free space left in the VG"):
        sizes = lv_sizes(vm, "atomicos")
        lab.evidence("lvs.txt", vm.succeed("lvs -a; vgs"))
        assert list(sizes) == ["root"] and sizes["root"] == 3 << 30, sizes
        free = vg_free_bytes(vm, "atomicos")
        assert free > 5 << 30, f"only {free} bytes free in atomicos"
        vm.require_mount("/", "/dev/mapper/atomicos-root", "xfs")
        assert "ftype=1" in vm.succeed("xfs_info /")
        lab.record("vg_free_bytes", free)

    with lab.step("container engines and tools are installed, not running"):
        versions = {tool: vm.succeed(f"{tool} --version").splitlines()[0]
                    for tool in ("docker", "podman", "runc", "crun", "skopeo", "etcd", "ostree")}
        lab.record("versions", versions)
        for unit in ("docker", "containerd", "etcd"):
            vm.require_unit_state(f"{unit}.service", "inactive")
