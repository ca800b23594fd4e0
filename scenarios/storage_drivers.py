"""storage-drivers: page-cache sharing between containers, devicemapper against overlay2, measured.

containers-storage-slides.txt, "COW file systems have some problems": every devicemapper container
reads its image through its own thin snapshot, so the kernel caches the same file once per
container; overlay2 containers read the one lower file and share its pages. N containers of one
image each read the same large file while `Cached` in /proc/meminfo is watched (caches dropped
first): overlay2's growth is about one file, devicemapper's about N files. Write throughput into a
container's root filesystem is recorded as a figure only.
"""

from __future__ import annotations

import re

from lab.containers import busybox_image, devicemapper, start_docker
from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, root_vg
from lab.machine import Machine
from lab.scenario import partly, reproduced, scenario

IMAGE = "localhost/lab/bigfile"


@scenario(
    "storage-drivers",
    "N containers reading one image file: devicemapper caches it N times, overlay2 once (container storage "
    "talk, \"COW file systems have some problems\"); write throughput as a figure",
    image="lab-atomic",
    memory=2048,
    params={"containers": 4, "file_mib": 200},
    tags=("storage", "containers", "catalog"),
    covers=(
        reproduced("page-cache-sharing"),
        partly("cow-write-performance", "a figure per driver, recorded, not asserted"),
    ),
    timeout=1800,
)
def storage_drivers(lab: ScenarioContext) -> None:
    vm, n, size = lab.machine, lab.params["containers"], lab.params["file_mib"]
    growth: dict[str, int] = {}
    pool = ThinPool(root_vg(lab.profile), "docker-pool")  # made before docker's devicemapper run
    for driver, daemon_json in (
        ("overlay2", {"storage-driver": "overlay2"}),
        ("devicemapper", devicemapper(pool.device)),
    ):
        with lab.step(f"{driver}: {n} containers each read the image's {size} MiB file"):
            if driver == "devicemapper":
                vm.succeed("systemctl stop docker.service docker.socket && rm -rf /var/lib/docker")
                create_thin_pool(vm, pool.vg, "3G", pool.name)
            info = start_docker(vm, daemon_json)
            assert f"Storage Driver: {driver}" in info, info
            build_image(vm, size)
            growth[driver] = cache_growth(vm, n)
            lab.record(f"{driver}_cached_growth_mib", growth[driver])
            lab.record(f"{driver}_write_mib_per_s", write_rate(vm))
            vm.succeed("docker rm -f $(docker ps -aq)")
    with lab.step(f"overlay2 cached the {size} MiB file once, devicemapper once per container ({n})"):
        lab.record("cache_growth_ratio", round(growth["devicemapper"] / max(growth["overlay2"], 1), 2))
        # Both runs also cache what starting containers reads (docker's binaries, busybox): the same
        # for both drivers, so it cancels out in the difference.
        assert growth["overlay2"] >= 0.9 * size, f"overlay2 never read the file: cache growth in MiB {growth}"
        assert growth["devicemapper"] >= 0.9 * n * size, f"devicemapper cached fewer than {n} copies: {growth}"
        extra_copies = (growth["devicemapper"] - growth["overlay2"]) / size
        lab.record("devicemapper_extra_copies", round(extra_copies, 2))
        assert extra_copies >= 0.8 * (n - 1), f"overlay2 did not share the file's pages: cache growth in MiB {growth}"


def build_image(vm: Machine, size_mib: int) -> None:
    """The busybox image plus /big, one layer of random data."""
    base = busybox_image(vm)
    vm.succeed(f"docker rm -f big-build 2>/dev/null || true; docker run --name big-build {base} "
               f"dd if=/dev/urandom of=/big bs=1M count={size_mib} && docker commit big-build {IMAGE} && "
               "docker rm big-build", timeout=600)


def cache_growth(vm: Machine, n: int) -> int:
    """MiB that `Cached` grows by while n running containers have each read /big once."""
    vm.succeed("sync && echo 3 > /proc/sys/vm/drop_caches")
    before = cached_mib(vm)
    for i in range(n):
        vm.succeed(f"docker run -d --name reader-{i} {IMAGE} sh -c 'cat /big > /dev/null && touch /read && "
                   "exec sleep 86400'")
    for i in range(n):
        vm.wait_until_succeeds(f"docker exec reader-{i} test -f /read", timeout=300)
    return cached_mib(vm) - before


def cached_mib(vm: Machine) -> int:
    meminfo = vm.succeed("cat /proc/meminfo")
    match = re.search(r"^Cached:\s+(\d+) kB", meminfo, re.MULTILINE)
    assert match, meminfo
    return int(match[1]) >> 10


def write_rate(vm: Machine) -> float:
    """MiB/s of a 256 MiB write with fsync into a fresh container's root filesystem."""
    out = vm.succeed(f"docker run --rm {IMAGE} sh -c 'time dd if=/dev/zero of=/w bs=1M count=256 conv=fsync' 2>&1",
                     timeout=600)
    match = re.search(r"real\s+(\d+)m\s*([\d.]+)s", out)  # busybox's `time`
    assert match, out
    return round(256 / (int(match[1]) * 60 + float(match[2])), 1)
