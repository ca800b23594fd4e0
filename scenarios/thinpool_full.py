"""thinpool-full: an LVM thin pool runs out of data space under an xfs filesystem.

The design card's own example (fedora-atomic-wiki.txt: thin-pool monitoring,
`dm.min_free_space`). What dm-thin, LVM and docker print is taken from
ground-truth.md §1-3 and asserted as the guest prints it.
"""

from __future__ import annotations

import re

from lab.containers import busybox_image, start_docker
from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import scenario

VG = "atomicos"
POOL = f"{VG}/lab-pool"
THIN = f"/dev/{VG}/lab-thin"
QUEUE = "switching pool to out-of-data-space (queue IO) mode"
ERROR = "switching pool to out-of-data-space (error IO) mode"
RESUMED = "switching pool to write mode"
NOSPACE = "No space left on device"
MODES = ("queue", "error", "autoextend", "docker", "recover")


@scenario(
    "thinpool-full",
    "Fill a thin pool through xfs until dm-thin runs out of data space (modes: queue, error, autoextend, "
    "docker, recover)",
    image="lab-atomic",
    memory=1024,
    params={"mode": "queue", "pool_size": "1G", "thin_size": "3G", "no_space_timeout": 10, "extend": "1G"},
    choices={"mode": MODES},
    tags=("storage",),
    timeout=1200,
)
def thinpool_full(lab: ScenarioContext) -> None:
    vm, mode = lab.machine, lab.params["mode"]
    if mode == "docker":
        docker_min_free_space(lab)
        return

    with lab.step("thin pool with a thin LV, xfs, and files written before the fill"):
        if mode == "autoextend":
            vm.succeed("printf 'activation {\\n thin_pool_autoextend_threshold = 50\\n"
                       " thin_pool_autoextend_percent = 100\\n}\\n' > /etc/lvm/lvmlocal.conf")
        vm.succeed(f"lvcreate -y --type thin-pool -L {lab.params['pool_size']} -n lab-pool {VG}")
        if mode == "error":  # lvcreate refuses --errorwhenfull for thin pools in lvm2 2.03.16; lvchange takes it
            vm.succeed(f"lvchange --errorwhenfull y {POOL}")
        vm.succeed(f"lvcreate -y -V {lab.params['thin_size']} -T {POOL} -n lab-thin")
        vm.succeed(f"mkfs.xfs -q {THIN} && mkdir -p /mnt/thin && mount {THIN} /mnt/thin")
        vm.succeed("for i in 1 2 3; do head -c 32M /dev/urandom > /mnt/thin/before-$i; done; sync;"
                   " sha256sum /mnt/thin/before-* > /root/before.sha256")
        lab.evidence("lvs-before.txt", lvs(vm))
        when_full = vm.succeed(f"lvs --noheadings -o lv_when_full {POOL}").strip()
        assert when_full == ("error" if mode == "error" else "queue"), when_full

    if mode == "autoextend":
        autoextend(lab)
        return

    timeout = lab.params["no_space_timeout"]
    with lab.step(f"fill the pool (no_space_timeout={timeout} s)"):
        vm.succeed(f"echo {timeout} > /sys/module/dm_thin_pool/parameters/no_space_timeout")
        lab.record("no_space_timeout", int(vm.succeed("cat /sys/module/dm_thin_pool/parameters/no_space_timeout")))
        marker = vm.mark_kernel_log("fill begins")
        vm.spawn("dd if=/dev/zero of=/mnt/thin/fill bs=1M oflag=direct", name="fill")
        if mode != "error":
            wait_for_kernel(vm, marker, QUEUE)
            assert health(vm) == "out_of_data", f"pool health {health(vm)!r}"
        dd = vm.wait_for_spawned("fill", timeout=timeout + 300)
        lab.evidence("dd.txt", dd.stdout)
        assert dd.rc != 0 and NOSPACE in dd.stdout, f"the writer should fail with ENOSPC: rc={dd.rc} {dd.stdout}"
        assert health(vm) == "out_of_data", f"pool health {health(vm)!r}"

    with lab.step("the kernel's messages and their timing"):
        log = vm.kernel_log_since(marker)
        lab.evidence("kernel-fill.txt", "\n".join(f"[{t:12.6f}] {text}" for t, text in log))
        lab.evidence("lvs-full.txt", lvs(vm))
        start = log[0][0] if log else 0.0
        queued, errored = first(log, QUEUE), first(log, ERROR)
        assert errored is not None, f"no {ERROR!r} in the kernel log"
        fill_mib = int(vm.succeed("stat -c %s /mnt/thin/fill")) >> 20
        lab.record("fill_reached_mib", fill_mib)
        lab.record("seconds_to_error_mode", round(errored - start, 2))
        if mode == "error":
            assert queued is None, "--errorwhenfull y must not queue"
        else:
            assert queued is not None, f"no {QUEUE!r} in the kernel log"
            lab.record("seconds_to_queue_mode", round(queued - start, 2))
            waited = errored - queued
            lab.record("seconds_queued", round(waited, 2))
            assert timeout - 1 <= waited <= timeout + 30, f"queued {waited:.1f} s, timeout is {timeout} s"
        assert fill_mib >= 512, f"only {fill_mib} MiB written before the pool ran out"

    if mode in ("queue", "recover"):
        recover(lab)


def recover(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step(f"extend the pool by {lab.params['extend']} from free VG space: IO resumes"):
        marker = vm.mark_kernel_log("extend")
        vm.succeed(f"lvextend -L +{lab.params['extend']} {POOL}")
        wait_for_kernel(vm, marker, RESUMED)
        assert health(vm) == "", f"pool health after extending: {health(vm)!r}"
        if vm.execute("touch /mnt/thin/probe").rc != 0:
            lab.record("xfs_needed_remount", True)  # xfs shut itself down on the failed writes
            vm.succeed(f"umount /mnt/thin && mount {THIN} /mnt/thin")
        vm.succeed("dd if=/dev/zero of=/mnt/thin/after bs=1M count=64 oflag=direct")
        lab.evidence("lvs-after.txt", lvs(vm))

    with lab.step("files written before the exhaustion keep their checksums"):
        vm.succeed("echo 3 > /proc/sys/vm/drop_caches; sha256sum -c /root/before.sha256")


def autoextend(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("dmeventd monitors the pool"):
        assert vm.succeed(f"lvs --noheadings -o seg_monitor {POOL}").strip() == "monitored"
        lab.record("autoextend", vm.succeed("lvmconfig --type full activation/thin_pool_autoextend_threshold "
                                            "activation/thin_pool_autoextend_percent").split())
    with lab.step("a write larger than the pool completes while the pool grows"):
        before = pool_bytes(vm)
        marker = vm.mark_kernel_log("autoextend fill")
        count = int(before * 1.5) >> 20
        vm.succeed(f"dd if=/dev/zero of=/mnt/thin/fill bs=1M count={count} oflag=direct", timeout=900)
        after = pool_bytes(vm)
        lab.record("pool_bytes", {"before": before, "after": after})
        assert after > before, "the pool did not grow"
        kernel = "\n".join(text for _, text in vm.kernel_log_since(marker))
        assert "out-of-data-space" not in kernel, kernel
        journal = vm.succeed("journalctl -b --no-pager -t dmeventd -t lvm")
        lab.evidence("dmeventd.txt", journal)
        assert re.search(rf"Size of logical volume {POOL}_tdata changed from", journal), journal
        assert f"Logical volume {POOL} successfully resized" in journal, journal


def docker_min_free_space(lab: ScenarioContext) -> None:
    vm = lab.machine
    pool = f"/dev/mapper/{VG}-docker--pool"
    with lab.step("docker on devicemapper with a thin pool and dm.min_free_space=10%"):
        vm.succeed(f"lvcreate -y --type thin-pool -L {lab.params['pool_size']} -n docker-pool {VG}")
        info = start_docker(vm, {"storage-driver": "devicemapper", "storage-opts": [
            f"dm.thinpooldev={pool}", "dm.min_free_space=10%", "dm.use_deferred_removal=true"]})
        lab.evidence("docker-info.txt", info)
        assert "Storage Driver: devicemapper" in info and f"Pool Name: {VG}-docker--pool" in info, info
        image = busybox_image(vm)

    with lab.step("a container fills the pool past docker's 10% free-space floor, short of full"):
        total, used = (int(x) for x in vm.succeed(
            f"lvs --noheadings --units m --nosuffix -o lv_size,data_percent {VG}/docker-pool"
            " | awk '{printf \"%d %d\", $1, $1*$2/100}'").split())
        fill = int(total * 0.94) - used
        lab.record("pool", {"total_mib": total, "used_mib": used, "fill_mib": fill})
        vm.succeed(f"docker run --name filler {image} dd if=/dev/zero of=/fill bs=1M count={fill}", timeout=600)
        assert health(vm, f"{VG}/docker-pool") == "", "the pool itself must not run out"

    with lab.step("the next container is refused by docker's free-space check"):
        vm.succeed("sync")
        out = vm.fail(f"docker run --rm {image} true")
        lab.evidence("docker-run-refused.txt", out)
        assert re.search(r"devmapper: Thin Pool has \d+ free data blocks which is less than minimum required "
                         r"\d+ free data blocks", out), out
        lab.evidence("lvs-docker.txt", lvs(vm))


def wait_for_kernel(vm: Machine, marker: str, text: str) -> None:
    vm.wait_until_succeeds(f"dmesg | sed -n '/{marker}/,$p' | grep -qF {text!r}", timeout=300)


def first(log: list[tuple[float, str]], text: str) -> float | None:
    return next((t for t, line in log if text in line), None)


def health(vm: Machine, pool: str = POOL) -> str:
    return vm.succeed(f"lvs --noheadings -o lv_health_status {pool}").strip()


def pool_bytes(vm: Machine) -> int:
    return int(vm.succeed(f"lvs --noheadings --units b --nosuffix -o lv_size {POOL}"))


def lvs(vm: Machine) -> str:
    return vm.succeed("lvs -a -o+lv_health_status,lv_when_full,seg_monitor,data_percent,metadata_percent")
