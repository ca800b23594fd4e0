"""loop-fallback: docker's devicemapper driver on loopback files when it is given no thin pool.

fedora-atomic-wiki.txt, "Storage setup": "If there is no free space in the volume group,
docker-storage-setup will fail to set up an LVM thin pool and will fall back to using loopback devices."
Bookworm has no docker-storage-setup, and docker 20.10 never makes a pool itself: given none, it uses
loop files whatever the VG holds. So the VG keeps its free space here (recorded), and what is shown is
docker's part of the story: no pool, loop files and docker's warnings (ground-truth §3); the fix is a
real pool through `dm.thinpooldev`, after which they are gone.
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
    "Docker devicemapper on loopback files when it is given no thin pool (Fedora Atomic wiki, Storage setup); "
    "fix: a thin pool through dm.thinpooldev",
    image="lab-atomic",
    memory=1024,
    params={"pool_size": size("2G", extents=True)},
    tags=("storage", "containers", "catalog"),
    covers=(
        partly("loop-fallback", "docker-storage-setup, whose failure on a full VG left docker without a pool, is "
                                "not in bookworm: docker's own fallback is shown, with free space in the VG"),
    ),
    timeout=1200,
)
def loop_fallback(lab: ScenarioContext) -> None:
    vm, vg = lab.machine, root_vg(lab.profile)
    with lab.step(f"docker on devicemapper without a pool (VG {vg} has room: docker does not look)"):
        lab.record("vg_free_bytes", vg_free_bytes(vm, vg))
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

    with lab.step("the fix: a thin pool, dm.thinpooldev pointing at it"):
        vm.succeed("systemctl stop docker.service docker.socket && rm -rf /var/lib/docker")
        pool = create_thin_pool(vm, vg, lab.params["pool_size"])
        info = start_docker(vm, devicemapper(pool.device))
        lab.evidence("pool/docker-info.txt", info)
        assert f"Pool Name: {pool.dm_name}" in info, info
        assert "loop file" not in info and "loopback" not in info, info
        assert vm.succeed(f"docker run --rm {busybox_image(vm)} echo on-pool").strip() == "on-pool"

