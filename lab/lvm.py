"""LVM for scenarios: the image's root VG, thin pools, and the names device-mapper gives them."""

from __future__ import annotations

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
