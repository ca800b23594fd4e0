"""btrfs-snapshots: docker's btrfs driver keeps each layer as a subvolume, and snapshots pay for atime.

overlayfs-discussion.txt: "btrfs subvols/snapshosts have their own costs", and "btrfs as
/var/lib/docker/btrfs has a disadvantage under certain circumstances: running commands (du,rsync,..) on
the subvolume folders altering the access time will incur a storage cost if the filesystem is mounted
without noatime option" (moby#39815). Docker 20.10's btrfs driver on a btrfs disk: one more container is
two more subvolumes (its layer and its init layer). Then twenty writable snapshots of a tree of
directories: one `du` over them with bookworm's default relatime rewrites each directory's atime, and
btrfs copies the metadata the snapshots shared; mounted noatime, the same `du` costs nothing.
"""

from __future__ import annotations

from lab.containers import busybox_image, start_docker
from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import Disk, reproduced, scenario

SERIAL = "btrfs"
DOCKER = "/var/lib/docker"
SNAPSHOTS, DIRS = 20, 2000
METADATA = "btrfs filesystem df -b {} | sed -n 's/^Metadata.*used=\\([0-9]*\\).*/\\1/p'"


@scenario(
    "btrfs-snapshots",
    "docker on btrfs: a subvolume per layer; a du over snapshots costs metadata space with relatime, none with "
    "noatime (overlayfs thread, moby#39815)",
    image="lab-atomic",
    memory=1024,
    disks=(Disk("4G", SERIAL),),
    tags=("storage", "containers", "catalog"),
    covers=(reproduced("btrfs-costs", "the atime cost is measured; the slowdown with thousands of snapshots is "
                                      "not"),),
    timeout=1200,
)
def btrfs_snapshots(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step(f"a btrfs disk at {DOCKER} (relatime, bookworm's default); docker on its btrfs driver"):
        vm.succeed(f"mkfs.btrfs -q /dev/disk/by-id/virtio-{SERIAL} && mkdir -p {DOCKER} && "
                   f"mount /dev/disk/by-id/virtio-{SERIAL} {DOCKER}")
        info = start_docker(vm, {"storage-driver": "btrfs"})
        lab.evidence("docker-info.txt", info)
        assert "Storage Driver: btrfs" in info, info
        image = busybox_image(vm)
    with lab.step("one more container is two more subvolumes: its layer and its init layer"):
        vm.succeed(f"docker run -d --name first {image} sleep 3600")
        before = _subvolumes(vm)
        vm.succeed(f"docker run -d --name second {image} sleep 3600")
        lab.evidence("subvolumes.txt", vm.succeed(f"btrfs subvolume list {DOCKER}"))
        assert _subvolumes(vm) - before == 2, (before, _subvolumes(vm))
    grown = {option: _du_cost(lab, vm, option) for option in ("relatime", "noatime")}
    lab.record("metadata_bytes_grown_by_du", grown)
    with lab.step("the du cost metadata space with relatime, and next to none with noatime"):
        assert grown["relatime"] >= 1 << 20 and grown["relatime"] > 10 * max(grown["noatime"], 1 << 12), grown


def _subvolumes(vm: Machine) -> int:
    return len(vm.succeed(f"btrfs subvolume list {DOCKER}").splitlines())


def _du_cost(lab: ScenarioContext, vm: Machine, option: str) -> int:
    """Bytes of metadata one `du` over fresh snapshots of a tree of directories adds, mounted with `option`."""
    top = f"{DOCKER}/lab-{option}"
    with lab.step(f"{option}: {SNAPSHOTS} snapshots of {DIRS} directories, then one du over them"):
        vm.succeed(f"mount -o remount,{option} {DOCKER} && btrfs subvolume create {top}-tree >/dev/null && "
                   f"cd {top}-tree && mkdir $(seq -f d%g {DIRS}) && "
                   f"for n in $(seq {SNAPSHOTS}); do btrfs subvolume snapshot {top}-tree {top}-$n >/dev/null; done; "
                   f"btrfs filesystem sync {DOCKER}", timeout=600)
        before = int(vm.succeed(METADATA.format(DOCKER)))
        vm.succeed(f"du -s {top}-* >/dev/null && btrfs filesystem sync {DOCKER}", timeout=600)
        return int(vm.succeed(METADATA.format(DOCKER))) - before
