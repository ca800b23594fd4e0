"""A host's storage as its sosreport shows it, read with insights-core: disks, partitions, PVs, VGs, LVs,
mounts, and the settings that change how they behave (lvm.conf's thin-pool autoextend and monitoring,
docker's storage options). `read(path)` takes an sos archive (.tar.xz) or its extracted directory.

A report comes from elsewhere: only the files named in WANTED are read (never through a link), and every
value passes lab.replay.grammar before it reaches the layout. What the lab cannot replay is kept in
`skipped`, with why."""

from __future__ import annotations

import importlib.util
import json
import shlex
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from lab.base.archives import extracted
from lab.base.errors import UsageError
from lab.replay import grammar
from lab.replay.layout import (
    KINDS,
    REPLAYED,
    Disk,
    HostLayout,
    LogicalVolume,
    Mount,
    Partition,
    PhysicalVolume,
    VolumeGroup,
    lv_of,
)

LVM_SETTINGS = ("thin_pool_autoextend_threshold", "thin_pool_autoextend_percent", "monitoring",
                "auto_activation_volume_list", "volume_list")  # lvm.conf keys that change behaviour
FILESYSTEMS = ("xfs", "ext4", "ext3", "ext2")


# The report's files the reader needs (what insights-core's sos specs name for the parsers below, and the
# few files read directly): nothing else of a report is unpacked.
WANTED = (*(f"sos_commands/{d}/{c}_*" for d in ("lvm2", "devicemapper") for c in ("lvs", "pvs", "vgs")),
          "sos_commands/devicemapper/dmsetup_table", "sos_commands/block/lsblk", "sos_commands/filesys/lsblk",
          "sos_commands/filesys/mount_-l", "sos_commands/xfs/xfs_info*", "sos_commands/kernel/uname_-a",
          "etc/lvm/lvm.conf", "etc/sysconfig/docker-storage", "etc/docker/daemon.json",
          "etc/containers/storage.conf")


def wanted(name: str) -> bool:
    """A report file the reader needs, at the report's top or one directory down (sosreport-HOST-DATE/)."""
    candidates = (name, name.partition("/")[2])
    return any(fnmatchcase(c, pattern) for c in candidates if c for pattern in WANTED)


def read(path: Path) -> HostLayout:
    """The storage layout of the host whose sosreport (archive or directory) is at `path`."""
    if importlib.util.find_spec("insights") is None:
        raise UsageError("lab replay reads sos reports with insights-core, which is not installed here: "
                         "pip install 'atomic-lab[replay]'")
    with _extracted(path) as root:
        try:
            parsed = _parse(root)
        except Exception as exc:  # insights-core on a file no sos wrote: the report's fault, not the lab's
            raise UsageError(f"{path}: the report could not be parsed ({type(exc).__name__}: {exc})") from None
        return layout_from(root, parsed)


@contextmanager
def _extracted(path: Path) -> Iterator[Path]:
    if not path.is_dir() and not (path.is_file() and tarfile.is_tarfile(path)):
        raise UsageError(f"{path}: not an sos report (an sosreport-*.tar.xz or its extracted directory)")
    with extracted(path, wanted, "lab-sos-") as tmp:
        yield _sos_root(tmp, path)


def _sos_root(directory: Path, given: Path) -> Path:
    """The report's top directory (the one holding sos_commands/), at or one level below `directory`."""
    candidates = (directory, *sorted(p for p in directory.iterdir() if p.is_dir()))
    tops = [c for c in candidates if (c / "sos_commands").is_dir()]
    if len(tops) != 1:
        why = "no sos_commands/ with LVM data in it" if not tops else "several reports in it"
        raise UsageError(f"{given}: not an sos report ({why})")
    return tops[0]


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
    host, kernel = (uname[1], uname[2]) if len(uname) > 2 else ("?", "?")
    layout = HostLayout(grammar.printable(host)[:64], grammar.printable(kernel)[:64])
    _block_devices(layout, parsed.get("lsblk"))
    layout.vgs = [_volume_group(layout, row) for row in parsed["vgs"].data]
    layout.pvs = [_physical_volume(row) for row in parsed["pvs"].data if _text(row, "VG")]
    chunks = _thin_pool_chunks(root)
    metas = {_text(row, "VG") + "/" + row["LV"][1:-7]: grammar.size(_text(row, "LSize"), "LV size")
             for row in parsed["lvs"].data if _text(row, "LV").startswith("[") and row["LV"].endswith("_tmeta]")}
    layout.lvs = [lv for row in parsed["lvs"].data if (lv := _logical_volume(layout, row, chunks, metas))]
    _mounts(layout, parsed.get("mount"), parsed.get("xfs") or [])
    _settings(layout, root, parsed)
    _drop_unplaced(layout)
    return layout


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def _first_line(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return lines[0] if lines else ""


def _block_devices(layout: HostLayout, lsblk: Any) -> None:
    for device in lsblk or []:
        name = grammar.device_name(str(device.name), "lsblk device")
        if device.data.get("MOUNTPOINT") == "[SWAP]":
            layout.swaps.append(f"/dev/mapper/{name}" if device.type == "lvm" else f"/dev/{name}")
        if device.type == "disk":
            layout.disks.append(Disk(name, grammar.size(str(device.size), f"disk {name}: size")))
        elif device.type == "part":
            disk = grammar.device_name(str((device.data.get("PARENT_NAMES") or [""])[0]), f"{name}'s disk")
            layout.partitions.append(Partition(name, disk, grammar.size(str(device.size), f"{name}: size")))
        elif device.type in ("crypt", "mpath", "loop"):
            layout.skipped.append(f"{name}: {device.type} device (LUKS, multipath and loop devices are not replayed)")


def _volume_group(layout: HostLayout, row: dict[str, Any]) -> VolumeGroup:
    name = grammar.lvm_name(_text(row, "VG"), "VG")
    attr = _text(row, "Attr")
    if len(attr) > 5 and attr[5] in "cs":
        layout.skipped.append(f"VG {name}: clustered or shared (vg_attr {grammar.printable(attr)}): replayed as a "
                              "local VG")
    return VolumeGroup(name, grammar.size(_text(row, "VSize"), f"VG {name}: VSize"),
                       grammar.size(_text(row, "VFree"), f"VG {name}: VFree", zero=True))


def _physical_volume(row: dict[str, Any]) -> PhysicalVolume:
    """A PV whose device is no disk or partition of the report's is dropped with its VG (_drop_unplaced)."""
    device, vg = _text(row, "PV").removeprefix("/dev/"), grammar.lvm_name(_text(row, "VG"), "PV's VG")
    return PhysicalVolume(device, vg, grammar.size(_text(row, "PSize"), f"PV {grammar.shown(device)}: PSize"))


def _logical_volume(layout: HostLayout, row: dict[str, Any], chunks: dict[str, int],
                    metas: dict[str, int]) -> LogicalVolume | None:
    name, attr = _text(row, "LV"), _text(row, "Attr")
    if name.startswith("["):  # hidden: a pool's data and metadata, made again with the pool
        return None
    vg, name = grammar.lvm_name(_text(row, "VG"), "LV's VG"), grammar.lvm_name(name, "LV")
    kind = KINDS.get(attr[:1], grammar.printable(attr[:1]) or "unknown")
    if kind not in REPLAYED:
        layout.skipped.append(f"{vg}/{name}: {kind} LV (only linear, thin-pool and thin LVs are replayed)")
        return None
    pool = grammar.lvm_name(_text(row, "Pool"), f"{vg}/{name}'s pool") if kind == "thin" else ""
    return LogicalVolume(vg, name, kind, grammar.size(_text(row, "LSize"), f"{vg}/{name}: LSize"), pool,
                         grammar.percent(_text(row, "Data%"), f"{vg}/{name}: Data%"),
                         grammar.percent(_text(row, "Meta%"), f"{vg}/{name}: Meta%"),
                         chunks.get(f"{vg}-{name}".replace("--", "-"), 0), metas.get(f"{vg}/{name}", 0))


def _thin_pool_chunks(root: Path) -> dict[str, int]:
    """Chunk sizes by pool ('vg-lv', dashes undoubled) from `dmsetup table`'s thin-pool lines (sectors)."""
    table = root / "sos_commands/devicemapper/dmsetup_table"
    chunks = {}
    for line in table.read_text(errors="replace").splitlines() if table.is_file() else []:
        name, _, rest = line.partition(": ")
        fields = rest.split()
        if len(fields) > 5 and fields[2] == "thin-pool" and name.endswith("-tpool"):
            chunks[name.removesuffix("-tpool").replace("--", "-")] = grammar.chunk(fields[5], f"{name}: chunk")
    return chunks


def _mounts(layout: HostLayout, mount: Any, xfs_infos: list[Any]) -> None:
    # `xfs_info /` is sos_commands/xfs/xfs_info, whose name gives no mount point
    ftypes = {info.mount or "/": str(info.xfs_info.get("naming", {}).get("ftype", "0")) for info in xfs_infos}
    for entry in mount or []:
        if entry.mount_type in FILESYSTEMS and str(entry.filesystem).startswith("/dev/"):
            source = grammar.mount_path(str(entry.filesystem), "mount source")
            path = grammar.mount_path(str(entry.mount_point), "mount point")
            ftype = ftypes.get(path, "0") if entry.mount_type == "xfs" else None
            if ftype not in (None, "0", "1"):
                raise grammar.BadValue(f"xfs_info of {grammar.shown(path)}: ftype {grammar.shown(ftype)}: not 0 or 1")
            layout.mounts.append(Mount(source, path, entry.mount_type, None if ftype is None else int(ftype)))


def _settings(layout: HostLayout, root: Path, parsed: dict[str, Any]) -> None:
    """lvm.conf's keys that change behaviour, docker's storage options, daemon.json and storage.conf."""
    conf = parsed.get("lvm_conf")
    for key in LVM_SETTINGS:
        value = conf.get(key) if conf is not None else None
        if value is None:
            continue
        if not key.endswith("volume_list") and not str(value).isdigit():
            raise grammar.BadValue(f"lvm.conf {key} = {grammar.shown(str(value))}: not a whole number")
        layout.lvm_settings[key] = grammar.printable(str(value))[:200]
    storage = parsed.get("docker_storage")
    try:
        layout.docker_storage = shlex.split(storage.storage_options) if storage is not None else []
    except ValueError:
        layout.skipped.append("/etc/sysconfig/docker-storage: unbalanced quotes, not replayed")
    daemon, containers = root / "etc/docker/daemon.json", root / "etc/containers/storage.conf"
    try:
        found = json.loads(daemon.read_text()) if daemon.is_file() else {}
        layout.docker_daemon = found if isinstance(found, dict) else {}
    except (ValueError, UnicodeDecodeError):
        layout.skipped.append("/etc/docker/daemon.json: not JSON, not replayed")
    layout.containers_storage = containers.read_text(errors="replace") if containers.is_file() else ""


def _drop_unplaced(layout: HostLayout) -> None:
    """A VG with a PV on no disk or partition the report lists (LUKS, loop, multipath, a name lsblk gives
    otherwise) cannot be placed on the lab's disks: it is listed as not replayed, with its LVs and mounts."""
    placed = {d.name for d in layout.disks} | {p.name for p in layout.partitions}
    lost = {pv.vg: pv.device for pv in layout.pvs if pv.device not in placed}
    lost |= {vg.name: "" for vg in layout.vgs if not any(pv.vg == vg.name for pv in layout.pvs)}
    lost |= {lv.vg: "" for lv in layout.lvs if lv.vg not in {vg.name for vg in layout.vgs}}
    for vg, device in sorted(lost.items()):
        where = f"its PV {grammar.shown(device)} is no disk or partition lsblk lists" if device else "no PV of it"
        layout.skipped.append(f"VG {vg}: {where} (LUKS, loop and multipath PVs are not replayed): not replayed")
    pools = {(lv.vg, lv.name) for lv in layout.lvs if lv.kind == "thin-pool"}
    layout.skipped += [f"{lv.vg}/{lv.name}: its pool {lv.pool} is not in the report: not replayed"
                       for lv in layout.lvs if lv.kind == "thin" and (lv.vg, lv.pool) not in pools]
    layout.pvs = [pv for pv in layout.pvs if pv.vg not in lost]
    layout.vgs = [vg for vg in layout.vgs if vg.name not in lost]
    layout.lvs = [lv for lv in layout.lvs if lv.vg not in lost and (lv.kind != "thin" or (lv.vg, lv.pool) in pools)]
    kept = {f"{lv.vg}/{lv.name}" for lv in layout.lvs}
    mounts, layout.mounts = layout.mounts, []
    for mount in mounts:
        if mount.source.removeprefix("/dev/") in placed or lv_of(mount.source) in kept:
            layout.mounts.append(mount)
        else:
            layout.skipped.append(f"{grammar.shown(mount.path)}: mounted from {grammar.shown(mount.source)}, which "
                                  "is not replayed")
