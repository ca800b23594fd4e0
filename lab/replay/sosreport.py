"""A host's storage as its sosreport shows it, read with insights-core: disks, partitions, PVs, VGs, LVs,
mounts, and the settings that change how they behave (lvm.conf's thin-pool autoextend and monitoring,
docker's storage options). `read(path)` takes an sos archive (.tar.xz) or its extracted directory."""

from __future__ import annotations

import json
import re
import shlex
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.base.archives import extracted
from lab.base.errors import UsageError

UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
LVM_SETTINGS = ("thin_pool_autoextend_threshold", "thin_pool_autoextend_percent", "monitoring",
                "auto_activation_volume_list", "volume_list")  # lvm.conf keys that change behaviour


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
    pvs: tuple[str, ...] = ()  # the devices its extents are on


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


def parse_size(text: str) -> int:
    """An LVM or lsblk size ('71.63g', '<2.00g', '512.00m', '4G', '0') in bytes."""
    match = re.fullmatch(r"[<>]?(\d+(?:\.\d+)?)([bkmgtp]?)", text.strip().lower().replace("ib", "").rstrip("s"))
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2) or "b"])


def _percent(text: str | None) -> float | None:
    return float(text) if text and text.strip() else None


KINDS = {"t": "thin-pool", "V": "thin", "-": "linear", "m": "mirror", "r": "raid", "s": "snapshot",
         "o": "origin", "C": "cache", "e": "pool-metadata", "i": "image", "l": "log"}
REPLAYED = {"linear", "thin-pool", "thin"}


def read(path: Path) -> HostLayout:
    """The storage layout of the host whose sosreport (archive or directory) is at `path`."""
    with _extracted(path) as root:
        return layout_from(root, _parse(root))


@contextmanager
def _extracted(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield _sos_root(path)
        return
    if not path.is_file() or not tarfile.is_tarfile(path):
        raise UsageError(f"{path}: not an sos report (an sosreport-*.tar.xz or its extracted directory)")
    with extracted(path, "lab-sos-") as tmp:
        yield _sos_root(tmp)


def _sos_root(directory: Path) -> Path:
    """The report's top directory (the one holding sos_commands/), at or one level below `directory`."""
    for candidate in (directory, *sorted(p for p in directory.iterdir() if p.is_dir())):
        if (candidate / "sos_commands").is_dir():
            return candidate
    raise UsageError(f"{directory}: not an sos report (no sos_commands/ in it)")


def _parse(root: Path) -> dict[str, Any]:
    """insights-core's parsers over the report: {name: parser result or None}."""
    from insights import load_default_plugins, run
    from insights.core.filters import add_filter
    from insights.parsers.lsblk import LSBlock
    from insights.parsers.lvm import LvmConf, LvsHeadings, PvsHeadings, VgsHeadings
    from insights.parsers.mount import Mount as MountParser
    from insights.parsers.sysconfig import DockerSysconfigStorage
    from insights.parsers.xfs_info import XFSInfo
    from insights.specs import Specs

    load_default_plugins()  # nothing parses before this
    add_filter(Specs.lvm_conf, list(LVM_SETTINGS))  # lvm.conf keeps only the lines some component asked for
    parsers = {"lvs": LvsHeadings, "vgs": VgsHeadings, "pvs": PvsHeadings, "lsblk": LSBlock,
               "mount": MountParser, "xfs": XFSInfo, "lvm_conf": LvmConf, "docker_storage": DockerSysconfigStorage}
    broker = run(list(parsers.values()), root=str(root))
    return {name: broker.get(parser) for name, parser in parsers.items()}


def layout_from(root: Path, parsed: dict[str, Any]) -> HostLayout:
    """The layout from the parsers' results and the few files they do not cover (pure, for tests)."""
    if parsed.get("lvs") is None or parsed.get("vgs") is None or parsed.get("pvs") is None:
        raise UsageError(f"{root}: the sos report has no LVM data (sos_commands/lvm2: lvs, vgs, pvs)")
    uname = _first_line(root / "sos_commands/kernel/uname_-a").split()  # Linux HOST KERNEL ...
    layout = HostLayout(uname[1] if len(uname) > 2 else "?", uname[2] if len(uname) > 2 else "?")
    _block_devices(layout, parsed.get("lsblk"))
    layout.pvs = [PhysicalVolume(row["PV"].removeprefix("/dev/"), row["VG"], parse_size(row["PSize"]))
                  for row in parsed["pvs"].data if row.get("VG")]
    layout.vgs = [VolumeGroup(row["VG"], parse_size(row["VSize"]), parse_size(row["VFree"]))
                  for row in parsed["vgs"].data]
    layout.skipped += [f"VG {row['VG']}: clustered or shared (vg_attr {row['Attr']}): replayed as a local VG"
                       for row in parsed["vgs"].data if len(row.get("Attr", "")) > 5 and row["Attr"][5] in "cs"]
    chunks = _thin_pool_chunks(root)
    metas = {row["VG"] + "/" + row["LV"][1:-7]: parse_size(row["LSize"])
             for row in parsed["lvs"].data if row["LV"].startswith("[") and row["LV"].endswith("_tmeta]")}
    layout.lvs = [lv for row in parsed["lvs"].data if (lv := _logical_volume(layout, row, chunks, metas))]
    _mounts(layout, parsed.get("mount"), parsed.get("xfs") or [])
    conf = parsed.get("lvm_conf")
    layout.lvm_settings = {k: str(conf.get(k)) for k in LVM_SETTINGS if conf is not None and conf.get(k) is not None}
    storage = parsed.get("docker_storage")
    layout.docker_storage = shlex.split(storage.storage_options) if storage is not None else []
    daemon, containers = root / "etc/docker/daemon.json", root / "etc/containers/storage.conf"
    try:
        layout.docker_daemon = json.loads(daemon.read_text()) if daemon.is_file() else {}
    except ValueError:
        layout.skipped.append("/etc/docker/daemon.json: not JSON, not replayed")
    layout.containers_storage = containers.read_text() if containers.is_file() else ""
    return layout


def _first_line(path: Path) -> str:
    return path.read_text().splitlines()[0] if path.is_file() else ""


def _block_devices(layout: HostLayout, lsblk: Any) -> None:
    for device in lsblk or []:
        if device.data.get("MOUNTPOINT") == "[SWAP]":
            layout.swaps.append(f"/dev/mapper/{device.name}" if device.type == "lvm" else f"/dev/{device.name}")
        if device.type == "disk":
            layout.disks.append(Disk(device.name, parse_size(device.size)))
        elif device.type == "part":
            disk = (device.data.get("PARENT_NAMES") or [""])[0]
            layout.partitions.append(Partition(device.name, disk, parse_size(device.size)))
        elif device.type in ("crypt", "mpath"):
            layout.skipped.append(f"{device.name}: {device.type} device (LUKS and multipath are not replayed)")


def _logical_volume(layout: HostLayout, row: dict[str, str], chunks: dict[str, int],
                    metas: dict[str, int]) -> LogicalVolume | None:
    name, attr = row["LV"], row["Attr"]
    if name.startswith("["):  # hidden: a pool's data and metadata, made again with the pool
        return None
    kind = KINDS.get(attr[0], attr[0])
    if kind not in REPLAYED:
        layout.skipped.append(f"{row['VG']}/{name}: {kind} LV (only linear, thin-pool and thin LVs are replayed)")
        return None
    devices = tuple(re.sub(r"\(\d+\)$", "", d).removeprefix("/dev/") for d in row.get("Devices", "").split(",") if d)
    return LogicalVolume(row["VG"], name, kind, parse_size(row["LSize"]), row.get("Pool", "") or "",
                         _percent(row.get("Data%")), _percent(row.get("Meta%")),
                         chunks.get(f"{row['VG']}-{name}".replace("--", "-"), 0),
                         metas.get(f"{row['VG']}/{name}", 0), devices)


def _thin_pool_chunks(root: Path) -> dict[str, int]:
    """Chunk sizes by pool ('vg-lv', dashes undoubled) from `dmsetup table`'s thin-pool lines (sectors)."""
    table = root / "sos_commands/devicemapper/dmsetup_table"
    chunks = {}
    for line in table.read_text().splitlines() if table.is_file() else []:
        name, _, rest = line.partition(": ")
        fields = rest.split()
        if len(fields) > 5 and fields[2] == "thin-pool" and name.endswith("-tpool"):
            chunks[name.removesuffix("-tpool").replace("--", "-")] = int(fields[5]) * 512
    return chunks


def _mounts(layout: HostLayout, mount: Any, xfs_infos: list[Any]) -> None:
    # `xfs_info /` is sos_commands/xfs/xfs_info, whose name gives no mount point
    ftypes = {info.mount or "/": int(info.xfs_info.get("naming", {}).get("ftype", 0)) for info in xfs_infos}
    for entry in mount or []:
        if entry.mount_type in ("xfs", "ext4", "ext3", "ext2") and entry.filesystem.startswith("/dev/"):
            layout.mounts.append(Mount(entry.filesystem, entry.mount_point, entry.mount_type,
                                       ftypes.get(entry.mount_point) if entry.mount_type == "xfs" else None))


