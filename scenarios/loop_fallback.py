"""loop-fallback: docker's devicemapper driver on loopback files when it is given no thin pool.

fedora-atomic-wiki.txt, "Storage setup": with no free space left in the root VG no thin pool
can be made, and devicemapper falls back to loopback devices. The warnings are docker 20.10's
(ground-truth §3); the fix is a real pool through `dm.thinpooldev`, after which they are gone.
"""

from __future__ import annotations

from lab.containers import busybox_image, devicemapper, start_docker
from lab.context import ScenarioContext
from lab.lvm import create_thin_pool, root_vg, vg_free_bytes
from lab.scenario import partly, scenario, size

LOOP_FILES = "/var/lib/docker/devicemapper/devicemapper"
DAEMON_WARNING = "Usage of loopback devices is strongly discouraged for production use."
INFO_WARNING = "WARNING: devicemapper: usage of loopback devices is strongly discouraged for production use."


@scenario(
    "loop-fallback",
    "Docker devicemapper on loopback files when the root VG is full (Fedora Atomic wiki, Storage setup); "
    "fix: a thin pool through dm.thinpooldev",
    image="lab-atomic",
    memory=1024,
    params={"pool_size": size("2G", extents=True)},
    tags=("storage", "containers", "catalog"),
    covers=(
        partly("loop-fallback", "docker 20.10 uses loop files whenever dm.thinpooldev is missing, not because the VG "
                                "is full"),
    ),
    timeout=1200,
)
def loop_fallback(lab: ScenarioContext) -> None:
    vm, vg = lab.machine, root_vg(lab.profile)
    with lab.step(f"no free space left in VG {vg}; docker on devicemapper without a pool"):
        vm.succeed(f"lvcreate -y -l 100%FREE -n taken {vg}")
        assert vg_free_bytes(vm, vg) == 0
        info = start_docker(vm, {"storage-driver": "devicemapper"})
        lab.evidence("loop/docker-info.txt", info)

    with lab.step("docker falls back to loopback files and warns, in its log and in docker info"):
        assert f"Data loop file: {LOOP_FILES}/data" in info, info
        assert f"Metadata loop file: {LOOP_FILES}/metadata" in info, info
        assert INFO_WARNING in info, info
        journal = vm.succeed("journalctl -b -u docker.service -o cat --no-pager")
        lab.evidence("loop/docker-journal.txt", journal)
        assert DAEMON_WARNING in journal, journal
        assert vm.succeed(f"docker run --rm {busybox_image(vm)} echo on-loop").strip() == "on-loop"
        lab.record("loop_devices", vm.succeed("losetup -n -O NAME,BACK-FILE").splitlines())

    with lab.step("the fix: free the VG, make a thin pool, point dm.thinpooldev at it"):
        vm.succeed(f"systemctl stop docker.service docker.socket && rm -rf /var/lib/docker && lvremove -y {vg}/taken")
        pool = create_thin_pool(vm, vg, lab.params["pool_size"])
        info = start_docker(vm, devicemapper(pool.device))
        lab.evidence("pool/docker-info.txt", info)
        assert f"Pool Name: {pool.dm_name}" in info, info
        assert "loop file" not in info and "loopback" not in info, info
        assert vm.succeed(f"docker run --rm {busybox_image(vm)} echo on-pool").strip() == "on-pool"

