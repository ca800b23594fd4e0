"""`lab replay SOSREPORT`: a guest whose storage is a production host's (read from its sosreport, scaled
into the lab's disk budget), compared with the host item by item in a side-by-side table."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from lab.base.errors import ScenarioFailed, UsageError
from lab.context import ScenarioContext
from lab.image.store import load_recipes
from lab.machine import Machine
from lab.replay import grammar, sosreport
from lab.replay.layout import KINDS, HostLayout
from lab.replay.plan import Plan, plan
from lab.scenario import Scenario, declare

REPLAY_IMAGE = "lab-bookworm"  # its root is plain ext4: none of its own VG names can clash with the host's
TIMEOUT = 3600  # seconds a replay's own steps may take (filling pools under TCG), before the scenario's
TOLERANCE = 5.0  # percentage points a replayed pool's Data% and Meta% may differ from the host's
GUEST_LVS = ("lvs -a --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_attr,lv_size,data_percent,"
             "metadata_percent,chunk_size")


@dataclass(frozen=True)
class Row:
    """One layout item, host against lab."""

    item: str
    kind: str
    host: str
    lab: str
    ok: bool


def prepare(path: Path, scale: float | None, image: str, images_dirs: tuple[Path, ...]) -> tuple[HostLayout, Plan]:
    """Read, check the image and plan before any guest boots, whichever door a user took (`lab replay`, the
    pytest plugin's host=): bad input is one line (UsageError)."""
    layout = sosreport.read(path)
    recipe = load_recipes(images_dirs).get(image)
    check_image(layout, recipe.profile.root_vg if recipe else None, image)
    return layout, plan(layout, scale)


def replay_scenario(layout: HostLayout, the_plan: Plan, then: Scenario | None = None) -> Scenario:
    """A scenario that recreates the host's storage in its guest, compares, then runs `then` if given."""

    def replay(lab: ScenarioContext) -> None:
        recreate(lab, layout, the_plan)
        if then is not None:
            then.func(lab)

    name = "replay-" + re.sub(r"[^a-z0-9]+", "-", layout.hostname.lower()).strip("-")
    return declare(name if len(name) > 7 else "replay-host", f"{layout.hostname}'s storage, from its sosreport",
                   replay, image=REPLAY_IMAGE, memory=1024, disks=the_plan.disks,
                   timeout=TIMEOUT + (then.timeout if then else 0))


def recreate(lab: ScenarioContext, layout: HostLayout, the_plan: Plan) -> None:
    """The host's storage in this guest, then the table (printed, kept as evidence/replay.md); a
    mismatch fails the run."""
    vm = lab.machine
    with lab.step(f"recreate {layout.hostname}'s storage at scale {the_plan.scale:.3g}"):
        for command in the_plan.commands:
            vm.succeed(command, timeout=1800)
    with lab.step("compare the replayed layout with the host's"):
        rows = compare(layout, the_plan, vm)
        table = render(layout, the_plan, rows)
        lab.evidence("replay.md", table)
        lab.log.info(table)
        lab.record("replay", {"scale": the_plan.scale, "items": len(rows), "matched": sum(r.ok for r in rows),
                              "not_replayed": list(the_plan.notes)})
        wrong = [f"{r.item} ({r.kind}): host {r.host}, lab {r.lab}" for r in rows if not r.ok]
        if wrong:
            raise ScenarioFailed("the replayed layout differs from the host's:\n  " + "\n  ".join(wrong))


def check_image(layout: HostLayout, root_vg: str | None, image: str) -> None:
    """Refuse, before any boot, an image whose own root VG has the name of one of the host's VGs."""
    if root_vg and root_vg in {vg.name for vg in layout.vgs}:
        raise UsageError(f"image {image} has its root on VG {root_vg}, a VG the host has too: replay it on an "
                         f"image without LVM root (default {REPLAY_IMAGE})")


def compare(layout: HostLayout, the_plan: Plan, vm: Machine) -> list[Row]:
    """Each host LV and mount against what the guest has now."""
    report = json.loads(vm.succeed(GUEST_LVS))["report"][0]["lv"]
    guest = {f"{lv['vg_name']}/{lv['lv_name']}": lv for lv in report}
    mounts = _mounts(vm)
    swaps = [line.split()[0] for line in vm.succeed("lsblk -rno NAME,MOUNTPOINT").splitlines() if "[SWAP]" in line]
    rows = []
    for lv in layout.lvs:
        key = f"{lv.vg}/{lv.name}"
        found = guest.get(key)
        want = the_plan.sizes[key]
        size = int(found["lv_size"]) if found else 0
        kind_ok = found is not None and _kind(found["lv_attr"]) == lv.kind
        rows.append(Row(key, lv.kind, f"{_gib(lv.size)} -> {_gib(want)}", _gib(size) if found else "missing",
                        kind_ok and size >= want))
        if lv.kind == "thin-pool" and found:
            for label, host, lab in (("data%", lv.data_percent, found["data_percent"]),
                                     ("meta%", lv.meta_percent, found["metadata_percent"])):
                if host is not None:
                    rows.append(Row(key, label, f"{host:.1f}", f"{float(lab or 0):.1f}",
                                    abs(float(lab or 0) - host) <= TOLERANCE))
            if lv.chunk:
                chunk = int(found["chunk_size"] or 0)
                rows.append(Row(key, "chunk", f"{lv.chunk >> 10}k", f"{chunk >> 10}k", chunk == lv.chunk))
    for mount in layout.mounts:
        target = the_plan.mounts.get(mount.path)
        found = mounts.get(target or "")
        fs = f"{mount.fstype}" + (f" ftype={mount.ftype}" if mount.ftype is not None else "")
        lab_fs = _fs(found) if found else ""
        rows.append(Row(mount.path, "mount", f"{mount.source} {fs}", f"{target} {lab_fs}" if found else "not mounted",
                        bool(found) and lab_fs == fs))
    for vg in layout.vgs:
        host_pvs = sum(pv.vg == vg.name for pv in layout.pvs)
        lab_pvs = vm.succeed(f"vgs --noheadings -o pv_count {shlex.quote(vg.name)} 2>/dev/null || echo 0").strip()
        rows.append(Row(vg.name, "vg", f"{host_pvs} PVs", f"{lab_pvs} PVs", lab_pvs == str(host_pvs)))
    for key, value in the_plan.lvm_settings.items():
        lab = vm.succeed(f"lvmconfig --type full {shlex.quote('activation/' + key)}").strip().partition("=")[2]
        rows.append(Row(key, "lvm.conf", value, lab, lab == value))
    for swap in layout.swaps:
        on = swap.removeprefix("/dev/mapper/").removeprefix("/dev/") in swaps
        rows.append(Row(swap, "swap", "in use", "in use" if on else "off", on))
    return rows


def _mounts(vm: Machine) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for line in vm.succeed("findmnt -rn -o TARGET,SOURCE,FSTYPE").splitlines():
        target, source, fstype = line.split()[:3]
        found[target] = {"source": source, "fstype": fstype}
        if fstype == "xfs":
            info = vm.succeed(f"xfs_info {target}")
            match = re.search(r"ftype=(\d)", info)
            found[target]["ftype"] = int(match.group(1)) if match else None
    return found


def _fs(mount: dict[str, object]) -> str:
    return f"{mount['fstype']}" + (f" ftype={mount['ftype']}" if mount.get("ftype") is not None else "")


def _kind(attr: str) -> str:
    return KINDS.get(attr[:1], attr[:1])


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.2f}G"


def render(layout: HostLayout, the_plan: Plan, rows: list[Row]) -> str:
    """The side-by-side table, then what was not replayed as-is."""
    lines = [f"# {layout.hostname} ({layout.kernel}) replayed at scale {the_plan.scale:.3g}", "",
             "| item | what | host | lab | ok |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(r.item)} | {r.kind} | {_cell(r.host)} | {_cell(r.lab)} | {'yes' if r.ok else 'NO'} |"
              for r in rows]
    lines += ["", f"{sum(r.ok for r in rows)} of {len(rows)} items match.", ""]
    lines += ["Not replayed as-is:", *(f"- {note}" for note in the_plan.notes)] if the_plan.notes else []
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A table cell: a mount path may hold '|', which would split the row."""
    return grammar.printable(text).replace("|", "\\|")
