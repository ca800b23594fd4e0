"""From a host's layout (lab.replay.sosreport) to a lab guest's: sizes scaled into the lab's disk budget, the
guest commands that recreate disks' partitions, PVs, VGs, LVs, filesystems, mounts, swap and thin-pool
fill, and the settings that change behaviour. Pure functions: the run itself is lab.replay's."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass

from lab.base.disks import Disk as LabDisk
from lab.base.errors import UsageError
from lab.replay import grammar
from lab.replay.layout import Disk as HostDisk
from lab.replay.layout import HostLayout, LogicalVolume, Mount, lv_of

q = shlex.quote  # every word from a report is quoted where it meets a guest shell

MIB = 1 << 20
EXTENT = 4 * MIB
DEFAULT_BUDGET = 8 << 30  # bytes of replayed disks a guest gets unless --scale says otherwise
MAX_DISKS = 16 << 30  # bytes of replayed disks a guest gets at most, whatever --scale says
MINIMUM = {"xfs": 300 * MIB, "ext4": 32 * MIB, "swap": 16 * MIB, "thin-pool": 64 * MIB, "": EXTENT}
GUEST_OWN = ("/", "/boot", "/usr", "/var", "/etc", "/home", "/tmp", "/sysroot")  # mounted under /replay instead
REPLAY_ROOT = "/replay"


@dataclass(frozen=True)
class Plan:
    scale: float
    disks: tuple[LabDisk, ...]  # serial host-<name>
    commands: tuple[str, ...]
    mounts: dict[str, str]  # host path -> guest path
    sizes: dict[str, int]  # "vg/lv" -> scaled bytes (virtual size for thin LVs)
    lvm_settings: dict[str, str]  # lvm.conf activation settings applied (lvmlocal.conf)
    notes: tuple[str, ...]  # what was not replayed as-is, and why


def serial(name: str) -> str:
    return f"host-{name}"[:20]


def device(layout: HostLayout, name: str) -> str:
    """The guest device of a host disk or partition, by the serial the lab gave its disk."""
    part = next((p for p in layout.partitions if p.name == name), None)
    if part is None:
        return f"/dev/disk/by-id/virtio-{serial(name)}"
    index = [p.name for p in layout.partitions if p.disk == part.disk].index(name) + 1
    return f"/dev/disk/by-id/virtio-{serial(part.disk)}-part{index}"


def plan(layout: HostLayout, scale: float | None = None, budget: int = DEFAULT_BUDGET) -> Plan:
    """Everything the guest must do to become the host, at `scale` (default: the host's disks into `budget`)."""
    if not layout.pvs:
        raise UsageError("the sos report shows no LVM physical volumes: nothing to replay")
    used = [d for d in layout.disks if _holds_storage(layout, d.name)]
    if not used:
        raise UsageError("the sos report's PVs are on no disk its lsblk lists: nothing to replay")
    factor = grammar.scale(scale if scale is not None else min(1.0, budget / sum(d.size for d in used)))
    fs_of = {lv_of(m.source): m for m in layout.mounts}
    sizes = {f"{lv.vg}/{lv.name}": _scaled(lv, factor, fs_of) for lv in layout.lvs}
    disks = _disks(layout, used, factor, sizes)
    _check_fits(disks, MAX_DISKS if scale is not None else int(budget * 1.25), factor)
    commands = [*_partitions(layout, factor), *_volumes(layout, sizes, factor), *_filesystems(layout, fs_of, sizes)]
    mounts = {m.path: _guest_path(m.path) for m in layout.mounts if lv_of(m.source) or _is_block(layout, m)}
    commands += _mount_commands(layout, mounts) + _fill(layout, sizes, fs_of, mounts) + _settings(layout)
    applied = {k: v for k, v in layout.lvm_settings.items() if not k.endswith("volume_list")}
    return Plan(factor, tuple(disks), tuple(commands), mounts, sizes, applied, tuple(_notes(layout, mounts)))


def _check_fits(disks: list[LabDisk], limit: int, factor: float) -> None:
    need = sum(d.bytes for d in disks)
    if need > limit:
        raise UsageError(f"the host's layout needs {need / (1 << 30):.1f} GiB of lab disks at scale {factor:.3g}, "
                         f"over the {limit >> 30} GiB a replay may use (each volume keeps a working minimum): "
                         "a smaller --scale helps only where the host's large volumes dominate")


def _holds_storage(layout: HostLayout, disk: str) -> bool:
    """A disk with a PV or a mounted filesystem on it or on one of its partitions."""
    names = {disk} | {p.name for p in layout.partitions if p.disk == disk}
    return any(pv.device in names for pv in layout.pvs) or any(m.source.removeprefix("/dev/") in names
                                                               for m in layout.mounts)


def _is_block(layout: HostLayout, mount: Mount) -> bool:
    """Mounted straight from a disk or a partition (not an LV)."""
    return mount.source.removeprefix("/dev/") in {d.name for d in layout.disks} | {p.name for p in layout.partitions}


def _guest_path(path: str) -> str:
    if path in GUEST_OWN or path.startswith("/sysroot"):
        return REPLAY_ROOT + path.rstrip("/")
    return path


def _scaled(lv: LogicalVolume, factor: float, fs_of: dict[str, Mount]) -> int:
    mount = fs_of.get(f"{lv.vg}/{lv.name}")
    floor = MINIMUM.get(mount.fstype if mount else lv.kind, EXTENT)
    return _extents(max(lv.size * factor, floor))


def _extents(size: float) -> int:
    return math.ceil(size / EXTENT) * EXTENT


def _disks(layout: HostLayout, used: list[HostDisk], factor: float, sizes: dict[str, int]) -> list[LabDisk]:
    """Each host disk scaled, grown where its VGs' scaled volumes need more than the scale gives."""
    need = {vg.name: sum(sizes[f"{lv.vg}/{lv.name}"] for lv in layout.lvs if lv.vg == vg.name and lv.kind != "thin")
            for vg in layout.vgs}
    have = {vg.name: vg.size * factor for vg in layout.vgs}
    grow = {vg: max(1.0, (need[vg] * 1.1 + 64 * MIB) / have[vg]) if have[vg] else 1.0 for vg in need}
    result = []
    for disk in used:
        vgs = {pv.vg for pv in layout.pvs if pv.device == disk.name or pv.device.startswith(disk.name)}
        size = disk.size * factor * max([grow.get(vg, 1.0) for vg in vgs] or [1.0])
        result.append(LabDisk(f"{max(1, math.ceil(size / MIB) + 8)}M", serial(disk.name)))
    return result


def _partitions(layout: HostLayout, factor: float) -> list[str]:
    commands = []
    for disk in sorted({p.disk for p in layout.partitions if _holds_storage(layout, p.disk)}):
        parts = [p for p in layout.partitions if p.disk == disk]
        lines = [f"size={max(1, int(p.size * factor / MIB))}MiB" for p in parts[:-1]] + [","]
        script = "label: gpt\\n" + "\\n".join(lines) + "\\n"
        commands.append(f"printf '{script}' | sfdisk -q {q(device(layout, disk))} && udevadm settle")
    return commands


def _volumes(layout: HostLayout, sizes: dict[str, int], factor: float) -> list[str]:
    commands = [f"pvcreate -q -y {q(device(layout, pv.device))}" for pv in layout.pvs]
    for vg in layout.vgs:
        pvs = " ".join(q(device(layout, pv.device)) for pv in layout.pvs if pv.vg == vg.name)
        commands.append(f"vgcreate -q -s 1m {q(vg.name)} {pvs}")  # 1 MiB extents: small pools' metadata
    order = {"thin-pool": 0, "linear": 1, "thin": 2}
    for lv in sorted(layout.lvs, key=lambda lv: order[lv.kind]):
        size, name = sizes[f"{lv.vg}/{lv.name}"], q(lv.name)
        if lv.kind == "thin-pool":
            chunk = f" -c {lv.chunk // 1024}k" if lv.chunk else ""
            meta_mib = math.ceil(max(lv.meta_size * factor, 2 * MIB) / MIB)  # Meta% follows data as on the host
            meta = f" --poolmetadatasize {meta_mib}m" if lv.meta_size else ""
            commands.append(f"lvcreate -q -y --type thin-pool -L {size}b{chunk}{meta} -n {name} {q(lv.vg)}")
        elif lv.kind == "thin":
            commands.append(f"lvcreate -q -y -V {size}b -T {q(lv.vg + '/' + lv.pool)} -n {name}")
        else:
            commands.append(f"lvcreate -q -y -L {size}b -n {name} {q(lv.vg)}")
    return commands


def _filesystems(layout: HostLayout, fs_of: dict[str, Mount], sizes: dict[str, int]) -> list[str]:
    commands = []
    for lv in layout.lvs:
        path = f"/dev/{lv.vg}/{lv.name}"
        mount = fs_of.get(f"{lv.vg}/{lv.name}")
        if mount and mount.fstype == "xfs":
            crc = " -m crc=0" if mount.ftype == 0 else ""  # ftype=0 needs the v4 format
            commands.append(f"mkfs.xfs -q -f{crc} -n ftype={1 if mount.ftype is None else mount.ftype} {q(path)}")
        elif mount:
            commands.append(f"mkfs.{q(mount.fstype)} -q -F {q(path)}")
        elif path in layout.swaps or f"/dev/mapper/{lv.vg}-{lv.name}" in layout.swaps:
            commands.append(f"mkswap -q {q(path)} && swapon {q(path)}")
    for mount in (m for m in layout.mounts if _is_block(layout, m)):
        commands.append(f"mkfs.{q(mount.fstype)} -q {q(device(layout, mount.source.removeprefix('/dev/')))}")
    return commands


def _mount_commands(layout: HostLayout, mounts: dict[str, str]) -> list[str]:
    commands = []
    for mount in sorted(layout.mounts, key=lambda m: (m.path.rstrip("/").count("/"), m.path)):
        if mount.path not in mounts:
            continue
        lv = lv_of(mount.source)
        source = f"/dev/{lv}" if lv else device(layout, mount.source.removeprefix("/dev/"))
        commands.append(f"mkdir -p {q(mounts[mount.path])} && mount {q(source)} {q(mounts[mount.path])}")
    return commands


def _fill(layout: HostLayout, sizes: dict[str, int], fs_of: dict[str, Mount], mounts: dict[str, str]) -> list[str]:
    """Each thin pool written up to the host's Data%: what its filesystems already took is measured in the
    guest first, the rest goes to its thin LVs in the shares they had on the host (through the filesystem
    where there is one, else straight to the device)."""
    commands = []
    for pool in (lv for lv in layout.lvs if lv.kind == "thin-pool" and lv.data_percent):
        thins = [lv for lv in layout.lvs if lv.kind == "thin" and lv.pool == pool.name and lv.vg == pool.vg
                 and lv.data_percent]
        weights = [lv.size * (lv.data_percent or 0) for lv in thins]
        pool_mib = sizes[f"{pool.vg}/{pool.name}"] // MIB
        script = [f"used=$(lvs --noheadings -o data_percent {q(f'{pool.vg}/{pool.name}')})"]
        for lv, weight in zip(thins, weights, strict=True):
            mount = fs_of.get(f"{lv.vg}/{lv.name}")
            target = f"{mounts[mount.path]}/lab-replay-fill" if mount else f"/dev/{lv.vg}/{lv.name}"
            share = weight / sum(weights)
            script.append(f"mib=$(awk -v u=\"$used\" 'BEGIN {{ m = ({pool.data_percent:.6f} - u) / 100 * {pool_mib} * "
                          f"{share:.4f}; print (m > 0) ? int(m) : 0 }}')")
            script.append(f"dd if=/dev/zero of={q(target)} bs=1M count=$mib conv=fsync status=none")
        commands.append("; ".join(script))
    return commands


def _settings(layout: HostLayout) -> list[str]:
    commands = []
    activation = [f"{k} = {v}" for k, v in layout.lvm_settings.items() if not k.endswith("volume_list")]
    if activation:  # lvmlocal.conf: the guest's lvm.conf stays Debian's
        text = "activation {\n" + "".join(f"\t{line}\n" for line in activation) + "}\n"
        commands.append(f"printf '%s' {q(text)} > /etc/lvm/lvmlocal.conf")
    if layout.containers_storage:
        commands.append(f"mkdir -p /etc/containers && printf '%s' {q(layout.containers_storage)} "
                        "> /etc/containers/storage.conf")
    if layout.docker_storage or layout.docker_daemon:
        commands.append(f"mkdir -p /etc/docker && printf '%s\\n' {q(daemon_json(layout))} "
                        "> /etc/docker/daemon.json")
    return commands


def daemon_json(layout: HostLayout) -> str:
    """The host's daemon.json, with its docker storage arguments (/etc/sysconfig/docker-storage) on top, as
    the guest docker's daemon.json."""
    args, config = layout.docker_storage, dict[str, object](layout.docker_daemon)
    opts = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--storage-opt"]
    driver = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--storage-driver", "-s")), "")
    if driver:
        config["storage-driver"] = driver
    if opts:
        config["storage-opts"] = opts
    return json.dumps(config)


def _notes(layout: HostLayout, mounts: dict[str, str]) -> list[str]:
    notes = list(layout.skipped)
    notes += [f"{d.name}: a {d.size >> 20} MiB disk with no PV and no mounted filesystem: not replayed"
              for d in layout.disks if not _holds_storage(layout, d.name)]
    notes += [f"{host}: mounted at {guest} (the guest's own {host})" for host, guest in mounts.items() if host != guest]
    notes += [f"lvm.conf {k} = {v}: recorded, not applied (it would change which of the guest's VGs activate)"
              for k, v in layout.lvm_settings.items() if k.endswith("volume_list")]
    return notes
