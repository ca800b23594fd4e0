"""A host's storage as the lab understands it: disks, partitions, PVs, VGs, LVs, mounts and the settings that
change how they behave. lab.replay.sosreport fills it from a report, with every value checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = {"t": "thin-pool", "V": "thin", "-": "linear", "m": "mirror", "r": "raid", "s": "snapshot",
         "o": "origin", "C": "cache", "e": "pool-metadata", "i": "image", "l": "log"}  # lv_attr's first letter
REPLAYED = {"linear", "thin-pool", "thin"}


@dataclass(frozen=True)
class Disk:
    name: str  # vda, sdb
    size: int


@dataclass(frozen=True)
class Partition:
    name: str  # vda2
    disk: str
    size: int


@dataclass(frozen=True)
class PhysicalVolume:
    device: str  # vda2 or vdb: a partition or a whole disk
    vg: str
    size: int


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    size: int
    free: int


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    name: str
    kind: str  # linear, thin-pool, thin (segment type, from lv_attr's first letter)
    size: int
    pool: str = ""  # a thin LV's pool
    data_percent: float | None = None  # a thin pool's or thin LV's Data%
    meta_percent: float | None = None  # a thin pool's Meta%
    chunk: int = 0  # a thin pool's chunk size (from dmsetup's table), 0: not in the report
    meta_size: int = 0  # a thin pool's metadata LV ([pool_tmeta])


@dataclass(frozen=True)
class Mount:
    source: str  # /dev/mapper/vg-lv, /dev/vda1
    path: str
    fstype: str
    ftype: int | None = None  # xfs: naming's ftype (d_type support)


@dataclass
class HostLayout:
    hostname: str
    kernel: str
    disks: list[Disk] = field(default_factory=list)
    partitions: list[Partition] = field(default_factory=list)
    pvs: list[PhysicalVolume] = field(default_factory=list)
    vgs: list[VolumeGroup] = field(default_factory=list)
    lvs: list[LogicalVolume] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    swaps: list[str] = field(default_factory=list)  # devices in use as swap (lsblk's [SWAP])
    lvm_settings: dict[str, str] = field(default_factory=dict)
    docker_storage: list[str] = field(default_factory=list)  # dockerd storage arguments, as the host passed them
    docker_daemon: dict[str, Any] = field(default_factory=dict)  # the host's /etc/docker/daemon.json
    containers_storage: str = ""  # the host's /etc/containers/storage.conf
    skipped: list[str] = field(default_factory=list)  # what cannot be replayed, and why


def lv_of(source: str) -> str:
    """'vg/lv' of a mount source (/dev/mapper/vg-lv with doubled dashes, /dev/vg/lv), '' for anything else."""
    if source.startswith("/dev/mapper/"):
        name = source.removeprefix("/dev/mapper/")
        split = next((i for i in range(1, len(name)) if name[i] == "-" and name[i - 1] != "-"
                      and (i + 1 >= len(name) or name[i + 1] != "-")), None)
        return "" if split is None else f"{name[:split].replace('--', '-')}/{name[split + 1:].replace('--', '-')}"
    parts = source.removeprefix("/dev/").split("/")
    return "/".join(parts) if len(parts) == 2 else ""
