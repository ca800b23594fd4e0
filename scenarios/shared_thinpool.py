"""shared-thinpool: one thin pool on a disk two hosts share, without locking and with lvmlockd.

field-wiki.txt, "Thin pools on shared storage": a thin pool "must be exclusively activated on only one
cluster node". Both hosts here see one raw disk (libvirt <shareable/>, no cache) holding VG shared with a
thin pool.
- locking=none: nothing stops host2 from activating the pool host1 has active. Each host's dm-thin keeps
  its own view of which data blocks are free, so a thin LV host2 writes and one host1 writes end up on
  the same blocks: host2 reads back data host1 wrote. Each host's dm-thin commits its own view of the
  pool's metadata, the last one wins: afterwards the metadata passes thin_check but lacks the thin device
  host2 created, which LVM's metadata still lists, and activating it fails (`No data available`).
- locking=lvmlockd: the VG is a shared VG (`vgcreate --shared`) under lvmlockd with sanlock, its locks
  on the disk itself. LVM activates a thin pool in a shared VG only exclusively (`-aey`), and host2 is
  refused while host1 holds it; once host1 deactivates it, host2 may.
"""

from __future__ import annotations

import re

from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, lv_field
from lab.machine import Machine
from lab.scenario import Disk, Node, reproduced, scenario

VG = "shared"
DISK = "/dev/disk/by-id/virtio-shared"
MiB = 160  # each host's file: more than the pool's free space between the two hosts' views
LOCKED = "LV locked by other host: {}"
LOCK_FAILED = "Failed to lock logical volume {}."


@scenario(
    "shared-thinpool",
    "a thin pool on a disk two hosts share: activated on both without locking, writes cross; under lvmlockd "
    "with sanlock, exclusive activation refuses the second host (field wiki)",
    image="lab-atomic",
    memory=768,
    machines={"host1": Node(), "host2": Node()},
    shared_disks=[Disk("2G", "shared")],
    params={"locking": "lvmlockd"},
    choices={"locking": ("lvmlockd", "none")},
    tags=("storage", "catalog"),
    covers=(
        reproduced("shared-thinpool"),
    ),
    timeout=1500,
)
def shared_thinpool(lab: ScenarioContext) -> None:
    {"none": _unlocked, "lvmlockd": _lvmlockd}[lab.params["locking"]](lab)


def _unlocked(lab: ScenarioContext) -> None:
    one, two = lab.machines["host1"], lab.machines["host2"]
    with lab.step("host1: VG shared on the shared disk, a thin pool and thin LV one, xfs, mounted"):
        one.succeed(f"pvcreate -y {DISK} && vgcreate {VG} {DISK}")
        pool = create_thin_pool(one, VG, "1G", name="pool")
        _thin_volume(one, pool, "one")

    with lab.step("host2 activates the same pool: LVM without locking lets it"):
        two.succeed(f"pvscan --cache && vgchange -ay {VG}")
        for name, vm in (("host1", one), ("host2", two)):
            attr = lv_field(vm, pool.lv, "lv_attr")
            assert attr[4] == "a", f"{name}: lvs shows {pool.lv} as {attr!r}, not active"

    with lab.step("host2 writes a thin LV of its own, then host1 writes: host2's file reads host1's lines"):
        _thin_volume(two, pool, "two")
        for vm, name in ((two, "two"), (one, "one")):  # each file a pattern its reader can recognise
            vm.succeed(f"{{ yes {name}-wrote-this || true; }} | head -c {MiB}M > /mnt/{name}/data && sync",
                       timeout=600)  # yes ends on SIGPIPE
        read = _lines(two, "two")
        lab.record("host2_file_lines", read)
        assert read.get("one-wrote-this", 0) > 0, f"host2's file holds none of host1's lines: {read}"

    with lab.step("both let go, host1 last: the pool's metadata is host1's, LVM's thin LV two is not in it"):
        for vm in (two, one):
            vm.succeed(f"umount /mnt/* && vgchange -an {VG}")
        thin_ids = {lv: lv_field(one, f"{VG}/{lv}", "thin_id") for lv in ("one", "two")}
        dump = one.succeed(f"lvchange -ay -y {VG}/pool_tmeta && thin_check /dev/{VG}/pool_tmeta 2>&1 && "
                           f"thin_dump /dev/{VG}/pool_tmeta; lvchange -an {VG}/pool_tmeta")
        lab.evidence("thin-check-and-dump.txt", dump)
        in_pool = re.findall(r'<device dev_id="(\d+)"', dump)
        lab.record("thin_ids", {"lvm": thin_ids, "pool_metadata": in_pool})
        assert in_pool == [thin_ids["one"]], f"the pool's metadata holds devices {in_pool}, LVM's {thin_ids}"
        activation = one.execute(f"{{ vgchange -ay {VG}; lvs -o lv_name,lv_attr,thin_id {VG}; }} 2>&1").stdout
        lab.evidence("vgchange-host1.txt", activation)
        assert "reload ioctl on" in activation and "failed: No data available" in activation, activation


def _lvmlockd(lab: ScenarioContext) -> None:
    one, two = lab.machines["host1"], lab.machines["host2"]
    with lab.step("both hosts: lvmlockd with sanlock, each with its own host_id"):
        for host_id, vm in enumerate((one, two), start=1):
            _start_lvmlockd(vm, host_id)

    with lab.step("host1: a shared VG (sanlock locks on the disk), a thin pool and thin LV one, in use"):
        one.succeed(f"vgcreate --shared {VG} {DISK}", timeout=600)
        pool = create_thin_pool(one, VG, "1G", name="pool")
        _thin_volume(one, pool, "one")
        lab.evidence("vgs-host1.txt", one.succeed(f"vgs -o +vg_lock_type,vg_lock_args {VG}"))

    with lab.step("host2 joins the VG's lockspace and is refused the pool host1 holds"):
        two.succeed(f"vgchange --lockstart {VG}", timeout=600)  # waits until host2 holds its sanlock host_id
        lab.evidence("lvmlockctl-info-host2.txt", two.succeed("lvmlockctl --info"))
        refused = two.fail(f"lvchange -aey {pool.lv} 2>&1", LOCKED.format(pool.lv))
        assert LOCKED.format(pool.lv) in refused and LOCK_FAILED.format(pool.lv) in refused, refused
        thin = two.fail(f"lvchange -aey {VG}/one 2>&1", LOCKED.format(pool.lv))  # a thin LV takes its pool's lock
        lab.evidence("refused.txt", f"$ lvchange -aey {pool.lv}\n{refused}\n$ lvchange -aey {VG}/one\n{thin}")
        assert LOCKED.format(pool.lv) in thin and LOCK_FAILED.format(f"{VG}/one") in thin, thin
        attr = lv_field(two, pool.lv, "lv_attr")
        assert attr[4] != "a", f"host2: lvs shows {pool.lv} as {attr!r}: active after a refusal"

    with lab.step("host1 deactivates the pool; host2 activates it exclusively and reads host1's data"):
        written = _write(one, "one")
        one.succeed(f"umount /mnt/one && lvchange -an {VG}/one {pool.lv}")
        two.succeed(f"lvchange -aey {VG}/one && mkdir -p /mnt/one && mount /dev/{VG}/one /mnt/one")
        assert _read(two, "one") == written, "host2 reads other data than host1 wrote"
        one.fail(f"lvchange -aey {pool.lv} 2>&1", LOCKED.format(pool.lv))


def _start_lvmlockd(vm: Machine, host_id: int) -> None:
    """use_lvmlockd in lvm.conf, the host's sanlock host_id in lvmlocal.conf, and the daemons: wdmd on the
    kernel's software watchdog (a VM has no hardware one), sanlock, lvmlockd."""
    vm.succeed("sed -i 's/^\\s*#\\?\\s*use_lvmlockd = .*/\\tuse_lvmlockd = 1/' /etc/lvm/lvm.conf && "
               "lvmconfig global/use_lvmlockd | grep -qx 'use_lvmlockd=1'")
    vm.write_file("/etc/lvm/lvmlocal.conf", f"local {{\n\thost_id = {host_id}\n}}\n")
    vm.succeed("modprobe softdog && systemctl start wdmd sanlock lvmlockd", timeout=300)


def _thin_volume(vm: Machine, pool: ThinPool, name: str) -> None:
    """A 1G thin LV `name` in `pool`, xfs, mounted at /mnt/`name`."""
    vm.succeed(f"lvcreate -y -V 1G --thinpool {pool.lv} -n {name} && mkfs.xfs -q /dev/{VG}/{name} && "
               f"mkdir -p /mnt/{name} && mount /dev/{VG}/{name} /mnt/{name}")


def _write(vm: Machine, name: str) -> str:
    """`MiB` MiB of random data in /mnt/`name`/data, on disk; its sha256."""
    vm.succeed(f"head -c {MiB}M /dev/urandom > /mnt/{name}/data && sync", timeout=600)
    return _read(vm, name)


def _lines(vm: Machine, name: str) -> dict[str, int]:
    """How often each line occurs in /mnt/`name`/data as read from the disk (page cache dropped)."""
    counted = vm.succeed(f"sync && echo 3 > /proc/sys/vm/drop_caches && tr -c 'a-z\\n-' '?' < /mnt/{name}/data | "
                         "sort | uniq -c | sort -rn | awk 'NR <= 5'", timeout=600)
    return {line.split()[1]: int(line.split()[0]) for line in counted.splitlines() if len(line.split()) == 2}


def _read(vm: Machine, name: str) -> str:
    """The sha256 of /mnt/`name`/data as read from the disk (page cache dropped)."""
    return vm.succeed(f"sync && echo 3 > /proc/sys/vm/drop_caches && sha256sum /mnt/{name}/data",
                      timeout=600).split()[0]
