"""LVM for scenarios: the image's root VG, thin pools, the names device-mapper gives them, and the fields
`lvs` and `vgs` report."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from lab.base.errors import UsageError
from lab.image.store import Profile
from lab.machine import Machine


def root_vg(profile: Profile) -> str:
    """The volume group of the image's root LV (lab-atomic, lab-ostree and Atomic hosts: atomicos)."""
    if profile.root_vg is None:
        raise UsageError("this scenario needs an image whose root is on LVM (profile root_vg)")
    return profile.root_vg


@dataclass(frozen=True)
class ThinPool:
    vg: str
    name: str

    @property
    def lv(self) -> str:
        """`vg/name`, as LVM's commands take it."""
        return f"{self.vg}/{self.name}"

    @property
    def dm_name(self) -> str:
        """Its device-mapper name (a dash inside a VG or LV name is doubled), as docker's Pool Name shows it."""
        return f"{self.vg.replace('-', '--')}-{self.name.replace('-', '--')}"

    @property
    def device(self) -> str:
        """What `dm.thinpooldev` takes."""
        return f"/dev/mapper/{self.dm_name}"


def create_thin_pool(vm: Machine, vg: str, size: str, name: str = "docker-pool", options: str = "") -> ThinPool:
    """`lvcreate --type thin-pool` of `size`: a size ('1G') or extents ('40%FREE', '90%VG'); `options` are
    more of lvcreate's (`--monitor n`, `--metadataprofile P`)."""
    amount = f"-l {size}" if "%" in size else f"-L {size}"
    vm.succeed(f"lvcreate -y --type thin-pool {amount} {options} -n {name} {vg}")
    return ThinPool(vg, name)


def lv_field(vm: Machine, lv: str, field: str) -> str:
    """One field of one LV (`vg/lv`) as `lvs` reports it: '' where LVM leaves it blank (an inactive LV's
    lv_active, a pool's unset profile)."""
    return vm.succeed(f"lvs --noheadings -o {field} {shlex.quote(lv)}").strip()


def lv_health(vm: Machine, lv: str) -> str:
    """lvs' lv_health_status: '' when healthy, a pool's out_of_data, failed, ..."""
    return lv_field(vm, lv, "lv_health_status")


def vg_field(vm: Machine, vg: str, field: str) -> str:
    """One field of one VG as `vgs` reports it."""
    return vm.succeed(f"vgs --noheadings -o {field} {shlex.quote(vg)}").strip()


def lv_bytes(vm: Machine, lv: str) -> int:
    """An LV's size in bytes."""
    return int(vm.succeed(f"lvs --noheadings --units b --nosuffix -o lv_size {shlex.quote(lv)}"))


def vg_free_bytes(vm: Machine, vg: str) -> int:
    """A VG's free space in bytes."""
    return int(vm.succeed(f"vgs --noheadings --units b --nosuffix -o vg_free {shlex.quote(vg)}"))


def lv_sizes(vm: Machine, vg: str) -> dict[str, int]:
    """Each LV of a VG (hidden ones aside) by name, its size in bytes."""
    out = vm.succeed(f"lvs --noheadings --units b --nosuffix -o lv_name,lv_size {shlex.quote(vg)}")
    return {name: int(size) for name, size in (line.split() for line in out.splitlines() if line.strip())}


def vg_names(vm: Machine) -> list[str]:
    """The guest's VGs, sorted as `vgs` lists them."""
    return vm.succeed("vgs --noheadings -o vg_name").split()
