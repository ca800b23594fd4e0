"""thinpool-reuse: docker refuses a thin pool that still holds data after /var/lib/docker was wiped.

fedora-atomic-wiki.txt, "Troubleshoot" 1: docker on devicemapper with `dm.thinpooldev`, its
metadata removed (`rm -rf /var/lib/docker`) while the pool keeps the old blocks; docker then fails
with "Unable to take ownership of thin-pool (...) that already has used data blocks". Docker 20.10
names the pool by its device-mapper name, not by the `dm.thinpooldev` path it was given
(ground-truth §3 expected the path). The wiki's fix: remove and recreate the pool.
"""

from __future__ import annotations

from lab.containers import busybox_image, devicemapper, docker_fails, start_docker
from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, lv_field, root_vg
from lab.machine import Machine
from lab.scenario import reproduced, scenario, size

REFUSED = ("failed to start daemon: error initializing graphdriver: devmapper: Unable to take ownership of "
           "thin-pool ({}) that already has used data blocks")


@scenario(
    "thinpool-reuse",
    "Docker refuses a used thin pool after /var/lib/docker is wiped (Fedora Atomic wiki, Troubleshoot: "
    "\"Unable to take ownership of thin-pool\"); fix: recreate the pool",
    image="lab-atomic",
    memory=1024,
    params={"pool_size": size("1G", extents=True)},
    tags=("storage", "containers", "catalog"),
    covers=(
        reproduced("thinpool-reuse", "docker 20.10 names the pool by its device-mapper name"),
    ),
    timeout=1200,
)
def thinpool_reuse(lab: ScenarioContext) -> None:
    vm, vg, size = lab.machine, root_vg(lab.profile), lab.params["pool_size"]
    with lab.step("docker on devicemapper with its own thin pool; a container writes to it"):
        pool = create_thin_pool(vm, vg, size)
        start_docker(vm, devicemapper(pool.device))
        vm.succeed(f"docker run --rm {busybox_image(vm)} dd if=/dev/zero of=/data bs=1M count=64", timeout=300)
        used = pool_data_percent(vm, pool)
        lab.record("pool_data_percent_used", used)
        assert used > 0, "the pool holds no data"

    with lab.step("docker's metadata wiped, the pool kept: docker refuses to start"):
        vm.succeed("systemctl stop docker.service docker.socket && rm -rf /var/lib/docker")
        journal = docker_fails(vm)
        lab.evidence("docker-journal.txt", journal)
        refused = REFUSED.format(pool.dm_name)
        assert refused in journal, journal
        lab.record("refusal", refused)

    with lab.step("the wiki's fix: remove and recreate the pool; docker starts and runs a container"):
        vm.succeed(f"rm -rf /var/lib/docker && lvremove -y {pool.lv} && systemctl reset-failed docker.service")
        create_thin_pool(vm, vg, size)
        vm.succeed("systemctl start docker.service", timeout=300)  # daemon.json as before
        info = vm.succeed("docker info 2>&1")
        lab.evidence("docker-info.txt", info)
        assert f"Pool Name: {pool.dm_name}" in info, info
        assert vm.succeed(f"docker run --rm {busybox_image(vm)} echo recovered").strip() == "recovered"


def pool_data_percent(vm: Machine, pool: ThinPool) -> float:
    return float(lv_field(vm, pool.lv, "data_percent"))
