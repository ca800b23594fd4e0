"""pool-inactive-at-boot: docker's thin pool is not activated at boot, so docker fails to start.

fedora-atomic-wiki.txt, "Troubleshoot" 5: after a reboot docker.service failed and its log named
a non-existing device; `lvchange -ay` on the pool and a docker restart brought it back. Here the
pool carries LVM's activation-skip flag, so neither the initramfs (whose udev rules activate the
whole VG, with its own copy of lvm.conf) nor the booted system activates it; the fix clears the
flag and runs the wiki's `lvchange -ay`. The failure text is the one this docker prints.
"""

from __future__ import annotations

from lab.containers import BUSYBOX, busybox_image, devicemapper, docker_fails, start_docker
from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, lv_field, root_vg
from lab.scenario import Setup, partly, scenario, size

POOL = "docker-pool"


def docker_on_a_pool(lab: ScenarioContext) -> None:
    """The setup its runs restore from a checkpoint: docker on a devicemapper thin pool, an image stored."""
    vm = lab.machine
    with lab.step("docker on a devicemapper thin pool, enabled at boot, with an image stored"):
        pool = create_thin_pool(vm, root_vg(lab.profile), lab.params["pool_size"], POOL)
        start_docker(vm, devicemapper(pool.device))
        busybox_image(vm)
        vm.succeed("systemctl enable docker.service")


@scenario(
    "pool-inactive-at-boot",
    "Docker fails at boot when its thin pool is not activated (Fedora Atomic wiki, Troubleshoot: "
    "\"Non existing device\"); fix: lvchange -ay and restart docker",
    image="lab-atomic",
    memory=1024,
    params={"pool_size": size("1G", extents=True)},
    tags=("storage", "containers", "catalog"),
    covers=(
        partly("non-existing-device", "the scenario keeps the pool inactive with LVM's activation-skip flag; why the "
                                      "field's pool was inactive is not known"),
    ),
    timeout=1200,
    setup=Setup("docker-on-a-thin-pool", docker_on_a_pool, reads=("pool_size",)),
)
def pool_inactive_at_boot(lab: ScenarioContext) -> None:
    vm, pool = lab.machine, ThinPool(root_vg(lab.profile), POOL)
    with lab.step("docker runs on the active pool, enabled at boot, with the image stored"):
        assert lv_field(vm, pool.lv, "lv_active") == "active", "the pool is not active"
        assert vm.succeed("systemctl is-enabled docker.service").strip() == "enabled"
        assert vm.succeed(f"docker image inspect -f '{{{{.Id}}}}' {BUSYBOX}").startswith("sha256:")

    with lab.step("the pool flagged to skip activation; after a reboot it is inactive and docker fails"):
        vm.succeed(f"lvchange --setactivationskip y {pool.lv}")
        vm.reboot()
        assert lv_field(vm, pool.lv, "lv_active") == "", "the pool was activated"
        journal = docker_fails(vm, start=False)
        lab.evidence("docker-journal.txt", journal)
        failure = [line for line in journal.splitlines() if "failed to start daemon" in line]
        assert failure and f"devicemapper: Non existing device {pool.dm_name}" in failure[-1], journal
        lab.record("docker_failure", failure[-1])

    with lab.step("the wiki's fix: activate the pool (lvchange -ay), restart docker; the stored image runs"):
        vm.succeed(f"lvchange --setactivationskip n {pool.lv} && lvchange -ay {pool.lv}")
        vm.succeed("systemctl reset-failed docker.service")
        vm.succeed("systemctl start docker.service", timeout=300)
        assert vm.succeed(f"docker run --rm {BUSYBOX} echo back").strip() == "back"
