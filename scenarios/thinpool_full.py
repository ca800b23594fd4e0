"""thinpool-full: an LVM thin pool runs out of data space under an xfs filesystem.

The design card's own example (fedora-atomic-wiki.txt: thin-pool monitoring,
`dm.min_free_space`). What dm-thin, LVM and docker print is taken from
ground-truth.md §1-3 and asserted as the guest prints it. One function per mode:
- queue: writes queue, then fail after no_space_timeout; the pool is extended from free VG space.
- error: `--errorwhenfull y`: writes fail at once; new files' metadata writes fail and xfs retries them.
- recover: the field's recovery: the VG has no free space, writes stay queued (no_space_timeout=0)
  while a new disk is plugged in, added to the VG and the pool grown onto it; the queued write completes.
- autoextend: dmeventd grows the pool as it fills (thresholds in lvmlocal.conf).
- unmonitored: the same thresholds, the pool's monitoring off (`lvchange --monitor n`): nothing grows it,
  it fills (field wiki: "automatic extension does not occur" without monitoring).
- profile: no thresholds in lvm.conf; the pool carries an LVM metadata profile that has them, as
  container-storage-setup set up docker's pool; dmeventd grows it.
- docker: docker's own `dm.min_free_space` floor refuses the next container.
- docker-grow: a container writes more than docker's pool holds; the pool, with no free space left in its
  VG, is grown onto a hot-plugged disk while the write waits (operator blog: "expanded onto another disk
  while ... online"): docker keeps running and the container's write completes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lab.containers import busybox_image, devicemapper, start_docker
from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, lv_bytes, lv_field, lv_health, root_vg
from lab.machine import Machine
from lab.scenario import Disk, partly, reproduced, scenario, size

SPARE = "spare"  # the disk `recover` plugs in while writes are queued
QUEUE = "switching pool to out-of-data-space (queue IO) mode"
ERROR = "switching pool to out-of-data-space (error IO) mode"
RESUMED = "switching pool to write mode"
RETRYING = "Retrying async write."  # xfs, on a metadata write that failed (rate-limited)
THIN_EVENTS = "device-mapper: thin: "  # the kernel's dm-thin lines, drawn on the report's plot of Data%
RESIZED = "Size of logical volume .* changed from"  # dmeventd's extension of a pool, drawn on its plots
NOSPACE = "No space left on device"
AUTOEXTEND = "activation {\n thin_pool_autoextend_threshold = 50\n thin_pool_autoextend_percent = 100\n}\n"


@scenario(
    "thinpool-full",
    "Fill a thin pool through xfs until dm-thin runs out of data space (modes: queue, error, recover, "
    "autoextend, unmonitored, profile, docker, docker-grow)",
    image="lab-atomic",
    memory=1024,
    disks=(Disk("2G", SPARE),),
    params={"mode": "queue", "pool_size": size("1G", extents=True), "thin_size": "3G", "no_space_timeout": 10,
            "extend": "1G"},
    choices={"mode": ("queue", "error", "recover", "autoextend", "unmonitored", "profile", "docker",
                        "docker-grow")},
    tags=("storage",),
    covers=(
        reproduced("thinpool-full"),
        reproduced("thinpool-grow-online"),
        reproduced("seg-monitor"),
        reproduced("dm-event-log"),
        reproduced("min-free-space", "docker 20.10 counts the free space in blocks and warns that devicemapper is "
                                     "deprecated"),
        reproduced("xfs-retry-full-pool", "`mode=error`: bookworm's xfs retries failed metadata writes forever by "
                                          "default (max_retries -1 for ENOSPC) and says so in the kernel log"),
        partly("lvs-data-columns", "Data% is read; the hidden sub-LVs and docker info's Metadata Space are not"),
    ),
    timeout=1200,
)
def thinpool_full(lab: ScenarioContext) -> None:
    MODES[lab.params["mode"]](lab)


def queue(lab: ScenarioContext) -> None:
    pool = make_pool(lab)
    log = fill_until_error(lab, pool, queued=True)
    assert_queued_for_timeout(lab, log)
    vm = lab.machine
    with lab.step(f"extend the pool by {lab.params['extend']} from free VG space: the pool takes writes again"):
        marker = vm.mark_kernel_log("extend")
        vm.succeed(f"lvextend -L +{lab.params['extend']} {pool.lv}")
        wait_for_kernel(vm, marker, RESUMED)
        assert lv_health(vm, pool.lv) == "", f"pool health after extending: {lv_health(vm, pool.lv)!r}"
        if vm.execute("touch /mnt/thin/probe").rc != 0:
            lab.record("xfs_needed_remount", True)  # xfs shut itself down on the failed writes
            vm.succeed(f"umount /mnt/thin && mount {thin(pool)} /mnt/thin")
        vm.succeed("dd if=/dev/zero of=/mnt/thin/after bs=1M count=64 oflag=direct")
        lab.evidence("lvs-after.txt", lvs(vm))
    files_intact(lab)


def error(lab: ScenarioContext) -> None:
    pool = make_pool(lab, error_when_full=True)
    log = fill_until_error(lab, pool, queued=False)
    assert first(log, QUEUE) is None, "--errorwhenfull y must not queue"
    xfs_retries(lab, pool)


def xfs_retries(lab: ScenarioContext, pool: ThinPool) -> None:
    """Operator blog, quoting Red Hat: on a full pool "XFS … will be retrying indefinitely in response to any
    I/O errors". New files need new metadata blocks; their writes fail with ENOSPC, and xfs retries them."""
    vm = lab.machine
    with lab.step("new files on the full pool: xfs's metadata writes fail with ENOSPC and it retries them"):
        device = vm.succeed(f"basename $(readlink -f {thin(pool)})").strip()
        policy = vm.succeed(f"grep -H . /sys/fs/xfs/{device}/error/metadata/ENOSPC/*").strip()
        lab.evidence("xfs-enospc-policy.txt", policy)
        assert f"/sys/fs/xfs/{device}/error/metadata/ENOSPC/max_retries:-1" in policy.splitlines(), policy
        marker = vm.mark_kernel_log("new files")
        vm.execute("for i in $(seq 1 2000); do : > /mnt/thin/meta-$i; done; sync", timeout=300)
        wait_for_kernel(vm, marker, RETRYING)
        said = [text for _, text in vm.get_kernel_log_since(marker) if text.startswith("XFS")]
        lab.evidence("xfs-retries.txt", "\n".join(said))
        assert any("error 28" in line for line in said), said  # ENOSPC from the pool
        lab.record("xfs_retry_lines", len([line for line in said if RETRYING in line]))


def recover(lab: ScenarioContext) -> None:
    vm = lab.machine
    vm.detach_disk(SPARE)  # not there yet: the operator brings it when the pool is full
    pool = make_pool(lab)
    vg_full(lab, pool)
    with lab.step("a write larger than the pool, queued for as long as it takes (no_space_timeout=0)"):
        vm.succeed("echo 0 > /sys/module/dm_thin_pool/parameters/no_space_timeout")
        marker = vm.mark_kernel_log("fill begins")
        count = (lv_bytes(vm, pool.lv) >> 20) * 3 // 2
        vm.spawn(f"dd if=/dev/zero of=/mnt/thin/fill bs=1M count={count} oflag=direct", name="fill")
        wait_for_kernel(vm, marker, QUEUE)
        assert lv_health(vm, pool.lv) == "out_of_data", f"pool health {lv_health(vm, pool.lv)!r}"
        require_blocked_writer(lab, vm)
    with lab.step("plug in a disk, add it to the VG and grow the pool onto it: the queued write completes"):
        grow_onto_spare(lab, pool)
        dd = vm.wait_for_spawned("fill", timeout=600)
        lab.evidence("dd.txt", dd.stdout)
        assert dd.rc == 0, f"the queued write failed instead of resuming: rc={dd.rc} {dd.stdout}"
        assert int(vm.succeed("stat -c %s /mnt/thin/fill")) >> 20 == count
        log = vm.get_kernel_log_since(marker)
        lab.evidence("kernel-fill.txt", "\n".join(f"[{t:12.6f}] {text}" for t, text in log))
        assert first(log, RESUMED) is not None, f"no {RESUMED!r} in the kernel log"
        assert first(log, ERROR) is None, "the pool errored writes instead of queueing them"
        assert lv_health(vm, pool.lv) == "", f"pool health after growing: {lv_health(vm, pool.lv)!r}"
        on_spare(lab, pool)
    files_intact(lab)


def vg_full(lab: ScenarioContext, pool: ThinPool) -> None:
    with lab.step(f"the rest of VG {pool.vg} is taken: the pool cannot grow from it"):
        lab.machine.succeed(f"lvcreate -y -l 100%FREE -n lab-other {pool.vg}")
        lab.machine.fail(f"lvextend -L +{lab.params['extend']} {pool.lv}", "Insufficient free space")


def grow_onto_spare(lab: ScenarioContext, pool: ThinPool) -> None:
    """The spare disk plugged in, made a PV of the pool's VG, and the pool extended onto it."""
    vm, spare = lab.machine, f"/dev/disk/by-id/virtio-{SPARE}"
    vm.attach_disk(SPARE)
    vm.wait_until_succeeds(f"test -b {spare}")
    vm.succeed(f"pvcreate -y {spare} && vgextend {pool.vg} {spare}")
    vm.succeed(f"lvextend -L +{lab.params['extend']} {pool.lv} $(readlink -f {spare})")


def on_spare(lab: ScenarioContext, pool: ThinPool) -> None:
    """The pool's data LV lies on the spare disk too."""
    vm, spare = lab.machine, f"/dev/disk/by-id/virtio-{SPARE}"
    devices = vm.succeed(f"lvs -a --noheadings -o devices {pool.lv}_tdata")
    lab.record("pool_data_devices", devices.split())
    assert vm.succeed(f"readlink -f {spare}").strip() in devices, f"the pool did not grow onto {spare}: {devices}"
    lab.evidence("lvs-after.txt", lvs(vm))


def docker_grow(lab: ScenarioContext) -> None:
    vm = lab.machine
    vm.detach_disk(SPARE)
    with lab.step("docker on devicemapper with its own thin pool"):
        pool = create_thin_pool(vm, root_vg(lab.profile), lab.params["pool_size"])
        start_docker(vm, devicemapper(pool.device))
        image = busybox_image(vm)
    vg_full(lab, pool)
    with lab.step("a container writes half as much again as the pool holds: its writes wait when it is full"):
        vm.succeed("echo 0 > /sys/module/dm_thin_pool/parameters/no_space_timeout")  # queue until it grows
        marker = vm.mark_kernel_log("container fill")
        count = (lv_bytes(vm, pool.lv) >> 20) * 3 // 2
        vm.spawn(f"docker run --name writer {image} dd if=/dev/zero of=/big bs=1M count={count} oflag=direct",
                 name="writer")
        wait_for_kernel(vm, marker, QUEUE)
        require_blocked_writer(lab, vm)
    with lab.step("the pool grown onto a hot-plugged disk online: docker kept running, the write completed"):
        before = vm.succeed("docker info --format '{{range .DriverStatus}}{{.}}{{end}}'")
        grow_onto_spare(lab, pool)
        run = vm.wait_for_spawned("writer", timeout=900)
        lab.evidence("writer.txt", run.stdout)
        assert run.rc == 0 and f"{count}+0 records out" in run.stdout, f"rc={run.rc} {run.stdout}"
        vm.require_unit_state("docker.service", "active")
        after = vm.succeed("docker info --format '{{range .DriverStatus}}{{.}}{{end}}'")
        lab.evidence("docker-driver-status.txt", f"before:\n{before}\nafter:\n{after}")
        assert data_total(after) != data_total(before), f"docker still sees {data_total(after)} for its pool"
        log = "\n".join(text for _, text in vm.get_kernel_log_since(marker))
        assert RESUMED in log and ERROR not in log, log
        on_spare(lab, pool)


def require_blocked_writer(lab: ScenarioContext, vm: Machine) -> None:
    """The writer (dd, the container's too: a host process) waits in the kernel on its queued write: state D
    and not a byte more written over 3 s. A writer that merely runs would pass neither."""
    said = vm.succeed("pid=$(pgrep -x dd) && w() { awk '/^wchar/ {print $2}' /proc/$pid/io; } && a=$(w) && "
                      "sleep 3 && echo \"$(ps -o stat= -p $pid) $a $(w) $(cat /proc/$pid/wchan)\"").split()
    lab.record("writer_blocked", dict(zip(("state", "wchar", "wchar_3s_later", "wchan"), said, strict=False)))
    assert said[0].startswith("D") and said[1] == said[2], f"dd is not blocked on its write: {said}"


def data_total(driver_status: str) -> str:
    """docker info's `Data Space Total` (devicemapper), e.g. '1.074GB'."""
    found = re.search(r"\[Data Space Total (\S+)\]", driver_status)
    assert found, driver_status
    return found.group(1)


def make_pool(lab: ScenarioContext, *, error_when_full: bool = False, options: str = "") -> ThinPool:
    vm = lab.machine
    with lab.step(f"thin pool{' ' + options if options else ''} with a thin LV, xfs, and files written before "
                  "the fill"):
        pool = create_thin_pool(vm, root_vg(lab.profile), lab.params["pool_size"], "lab-pool", options)
        if error_when_full:  # lvcreate refuses --errorwhenfull for thin pools in lvm2 2.03.16; lvchange takes it
            vm.succeed(f"lvchange --errorwhenfull y {pool.lv}")
        vm.succeed(f"lvcreate -y -V {lab.params['thin_size']} -T {pool.lv} -n lab-thin")
        vm.succeed(f"mkfs.xfs -q {thin(pool)} && mkdir -p /mnt/thin && mount {thin(pool)} /mnt/thin")
        vm.succeed("for i in 1 2 3; do head -c 32M /dev/urandom > /mnt/thin/before-$i; done; sync;"
                   " sha256sum /mnt/thin/before-* > /root/before.sha256")
        lab.evidence("lvs-before.txt", lvs(vm))
        when_full = lv_field(vm, pool.lv, "lv_when_full")
        assert when_full == ("error" if error_when_full else "queue"), when_full
    return pool


def fill_until_error(lab: ScenarioContext, pool: ThinPool, *, queued: bool) -> list[tuple[float, str]]:
    """Write until the writer fails with ENOSPC; the kernel's messages since the fill began."""
    vm, timeout = lab.machine, lab.params["no_space_timeout"]
    with lab.step(f"fill the pool (no_space_timeout={timeout} s)"):
        vm.succeed(f"echo {timeout} > /sys/module/dm_thin_pool/parameters/no_space_timeout")
        lab.record("no_space_timeout", int(vm.succeed("cat /sys/module/dm_thin_pool/parameters/no_space_timeout")))
        marker = vm.mark_kernel_log("fill begins")
        with lab.sample("pool Data%", f"lvs --noheadings -o data_percent {pool.lv}", events=THIN_EVENTS):
            vm.spawn("dd if=/dev/zero of=/mnt/thin/fill bs=1M oflag=direct", name="fill")
            if queued:
                wait_for_kernel(vm, marker, QUEUE)
                assert lv_health(vm, pool.lv) == "out_of_data", f"pool health {lv_health(vm, pool.lv)!r}"
            dd = vm.wait_for_spawned("fill", timeout=timeout + 300)
        lab.evidence("dd.txt", dd.stdout)
        assert dd.rc != 0 and NOSPACE in dd.stdout, f"the writer should fail with ENOSPC: rc={dd.rc} {dd.stdout}"
        assert lv_health(vm, pool.lv) == "out_of_data", f"pool health {lv_health(vm, pool.lv)!r}"

    with lab.step("the kernel switched the pool to erroring writes"):
        log = vm.get_kernel_log_since(marker)
        lab.evidence("kernel-fill.txt", "\n".join(f"[{t:12.6f}] {text}" for t, text in log))
        lab.evidence("lvs-full.txt", lvs(vm))
        errored = first(log, ERROR)
        assert errored is not None, f"no {ERROR!r} in the kernel log"
        fill_mib = int(vm.succeed("stat -c %s /mnt/thin/fill")) >> 20
        lab.record("fill_reached_mib", fill_mib)
        lab.record("seconds_to_error_mode", round(errored - (log[0][0] if log else 0.0), 2))
        assert fill_mib >= 512, f"only {fill_mib} MiB written before the pool ran out"
    return log


def assert_queued_for_timeout(lab: ScenarioContext, log: list[tuple[float, str]]) -> None:
    timeout = lab.params["no_space_timeout"]
    with lab.step(f"writes were queued for no_space_timeout ({timeout} s) before they failed"):
        queued, errored = first(log, QUEUE), first(log, ERROR)
        assert queued is not None and errored is not None, f"no {QUEUE!r} before {ERROR!r} in the kernel log"
        lab.record("seconds_to_queue_mode", round(queued - log[0][0], 2))
        waited = errored - queued
        lab.record("seconds_queued", round(waited, 2))
        # the kernel's order: queue mode, then error mode no sooner than its no_space_timeout timer allows
        assert queued < errored and waited >= timeout - 1, f"queued {waited:.1f} s, timeout is {timeout} s"


def files_intact(lab: ScenarioContext) -> None:
    with lab.step("files written before the exhaustion keep their checksums"):
        lab.machine.succeed("echo 3 > /proc/sys/vm/drop_caches; sha256sum -c /root/before.sha256")


def autoextend(lab: ScenarioContext) -> None:
    vm = lab.machine
    vm.write_file("/etc/lvm/lvmlocal.conf", AUTOEXTEND)
    pool = make_pool(lab)
    with lab.step("dmeventd monitors the pool"):
        assert lv_field(vm, pool.lv, "seg_monitor") == "monitored"
        lab.record("autoextend", vm.succeed("lvmconfig --type full activation/thin_pool_autoextend_threshold "
                                            "activation/thin_pool_autoextend_percent").split())
    grows_while_written(lab, pool)


def unmonitored(lab: ScenarioContext) -> None:
    vm = lab.machine
    vm.write_file("/etc/lvm/lvmlocal.conf", AUTOEXTEND)
    pool = make_pool(lab)  # its thin LV's activation monitors it, whatever lvcreate --monitor said
    with lab.step("the thresholds are set, but the pool's monitoring is turned off (lvchange --monitor n)"):
        vm.succeed(f"lvchange --monitor n {pool.lv}")
        assert lv_field(vm, pool.lv, "seg_monitor") == "not monitored", lv_field(vm, pool.lv, "seg_monitor")
        before = lv_bytes(vm, pool.lv)
    fill_until_error(lab, pool, queued=True)
    with lab.step("the pool never grew: nothing extended it"):
        assert lv_bytes(vm, pool.lv) == before, f"the pool grew from {before} to {lv_bytes(vm, pool.lv)} bytes"
        journal = vm.succeed("journalctl -b --no-pager -t dmeventd -t lvm")
        lab.evidence("dmeventd.txt", journal)
        assert "Size of logical volume" not in journal, journal


def profile(lab: ScenarioContext) -> None:
    vm = lab.machine
    vm.write_file("/etc/lvm/profile/lab-pool.profile", AUTOEXTEND)
    pool = make_pool(lab, options="--metadataprofile lab-pool")
    with lab.step("lvm.conf does not extend pools; the pool's own profile does, and dmeventd monitors it"):
        assert vm.succeed("lvmconfig --type full activation/thin_pool_autoextend_threshold").strip() \
            == "thin_pool_autoextend_threshold=100", "lvm.conf itself would extend the pool"
        assert lv_field(vm, pool.lv, "lv_profile") == "lab-pool"
        assert lv_field(vm, pool.lv, "seg_monitor") == "monitored"
        lab.record("profile", vm.succeed("lvmconfig --type full --metadataprofile lab-pool "
                                         "activation/thin_pool_autoextend_threshold").strip())
    grows_while_written(lab, pool)


def grows_while_written(lab: ScenarioContext, pool: ThinPool) -> None:
    vm = lab.machine
    with lab.step("a write larger than the pool completes while the pool grows"):
        before = lv_bytes(vm, pool.lv)
        marker = vm.mark_kernel_log("autoextend fill")
        count = int(before * 1.5) >> 20
        with lab.sample("VG free (MiB)", f"vgs --noheadings --units m --nosuffix -o vg_free {pool.vg}", every=2,
                        events=RESIZED), \
                lab.sample("pool Data%", f"lvs --noheadings -o data_percent {pool.lv}", every=2, events=RESIZED):
            vm.succeed(f"dd if=/dev/zero of=/mnt/thin/fill bs=1M count={count} oflag=direct", timeout=900)
        after = lv_bytes(vm, pool.lv)
        lab.record("pool_bytes", {"before": before, "after": after})
        assert after > before, "the pool did not grow"
        kernel = "\n".join(text for _, text in vm.get_kernel_log_since(marker))
        assert "out-of-data-space" not in kernel, kernel
        journal = vm.succeed("journalctl -b --no-pager -t dmeventd -t lvm")
        lab.evidence("dmeventd.txt", journal)
        assert re.search(rf"Size of logical volume {pool.lv}_tdata changed from", journal), journal
        assert f"Logical volume {pool.lv} successfully resized" in journal, journal


def docker(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("docker on devicemapper with a thin pool and dm.min_free_space=10%"):
        pool = create_thin_pool(vm, root_vg(lab.profile), lab.params["pool_size"])
        info = start_docker(vm, devicemapper(pool.device, "dm.min_free_space=10%", "dm.use_deferred_removal=true"))
        lab.evidence("docker-info.txt", info)
        assert "Storage Driver: devicemapper" in info and f"Pool Name: {pool.dm_name}" in info, info
        image = busybox_image(vm)

    with lab.step("a container fills the pool past docker's 10% free-space floor, short of full"):
        total, used = (int(x) for x in vm.succeed(
            f"lvs --noheadings --units m --nosuffix -o lv_size,data_percent {pool.lv}"
            " | awk '{printf \"%d %d\", $1, $1*$2/100}'").split())
        fill = int(total * 0.94) - used
        lab.record("pool", {"total_mib": total, "used_mib": used, "fill_mib": fill})
        vm.succeed(f"docker run --name filler {image} dd if=/dev/zero of=/fill bs=1M count={fill}", timeout=600)
        assert lv_health(vm, pool.lv) == "", "the pool itself must not run out"

    with lab.step("the next container is refused by docker's free-space check"):
        vm.succeed("sync")
        out = vm.fail(f"docker run --rm {image} true", "devmapper: Thin Pool has ")
        lab.evidence("docker-run-refused.txt", out)
        assert re.search(r"devmapper: Thin Pool has \d+ free data blocks which is less than minimum required "
                         r"\d+ free data blocks", out), out
        lab.evidence("lvs-docker.txt", lvs(vm))


def wait_for_kernel(vm: Machine, marker: str, text: str) -> None:
    vm.wait_until_succeeds(f"dmesg | sed -n '/{marker}/,$p' | grep -qF {text!r}", timeout=300)


def first(log: list[tuple[float, str]], text: str) -> float | None:
    return next((t for t, line in log if text in line), None)


def thin(pool: ThinPool) -> str:
    """The thin LV's device, on which xfs is made."""
    return f"/dev/{pool.vg}/lab-thin"


def lvs(vm: Machine) -> str:
    return vm.succeed("lvs -a -o+lv_health_status,lv_when_full,seg_monitor,data_percent,metadata_percent")


MODES: dict[str, Callable[[ScenarioContext], None]] = {
    "queue": queue, "error": error, "recover": recover, "autoextend": autoextend, "unmonitored": unmonitored,
    "profile": profile, "docker": docker, "docker-grow": docker_grow}

