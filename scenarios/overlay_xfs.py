"""overlay-xfs: container storage on an xfs filesystem without d_type (ftype=0), and libpod#2158.

Recreates atomic-host-operator-blog.txt (top): podman's "'overlay' is not supported over xfs" on
a freshly made xfs, then traced to an old camel-case ~/.config/containers/storage.conf
(containers/libpod#2158). What bookworm's kernel, podman 4.3 and docker 20.10 print instead is
ground-truth.md §6-7: the engines' d_type errors, the kernel's warning (its mount still
succeeds), podman silently adopting fuse-overlayfs when it is installed, and a camel-case file
that today only draws warnings. The 2019 message is asserted absent, not faked.
"""

from __future__ import annotations

import json
from typing import Any

from lab.containers import busybox_image, docker_fails
from lab.context import ScenarioContext
from lab.machine import ROOT, Machine
from lab.scenario import Disk, partly, reproduced, scenario

DISK = "/dev/disk/by-id/virtio-storage"
STORAGE = "/var/lib/containers"  # podman's graphroot lives under it; docker's is bind-mounted from it
RUNROOT = "/run/containers/storage"
FUSE = "/usr/bin/fuse-overlayfs"

KERNEL_D_TYPE = "overlayfs: upper fs needs to support d_type."
WHY = ("the backing xfs filesystem is formatted without d_type support, which leads to incorrect behavior. "
       "Reformat the filesystem with ftype=1 to enable d_type support.")
PODMAN_D_TYPE = (f"Error: kernel does not support overlay fs: overlay: {WHY} "
                 "Running without d_type is not supported.: driver not supported")
DOCKER_D_TYPE = (f"failed to start daemon: error initializing graphdriver: overlay2: {WHY} "
                 "Backing filesystems without d_type support are not supported.")
FIELD_2019 = "'overlay' is not supported over xfs"

CAMEL_CASE = """\
RunRoot = "/run/user/{uid}"
GraphRoot = "{home}/.local/share/containers/storage"
GraphDriverName = "overlay"
GraphDriverOptions = ["overlay.mount_program={fuse}"]
"""
CURRENT = """\
[storage]
driver = "overlay"
runroot = "/run/user/{uid}/containers"
graphroot = "{home}/.local/share/containers/storage"

[storage.options.overlay]
mount_program = "{fuse}"
"""


@scenario(
    "overlay-xfs",
    "Overlay container storage on xfs ftype=0 (podman, docker overlay2, kernel), then ftype=1; rootless "
    "podman with libpod#2158's camel-case storage.conf and with the current format",
    image="lab-atomic",
    memory=1024,
    disks=(Disk("2G", "storage"),),
    tags=("containers", "storage"),
    covers=(
        reproduced("xfs-ftype"),
        reproduced("storage-conf-camel-case", "containers/storage 1.43 only warns (`Failed to decode the keys`) and "
                                              "runs"),
        partly("overlay-xfs-2019", "the 2019 message does not reproduce on Linux >= 5.11 (rootless kernel overlay); "
                                   "its absence and why are asserted"),
    ),
    timeout=1200,
)
def overlay_xfs(lab: ScenarioContext) -> None:
    vm = lab.machine
    _ftype0(lab, vm)
    _fuse_then_ftype1(lab, vm)
    libpod_2158(lab)


def _ftype0(lab: ScenarioContext, vm: Machine) -> None:
    """xfs without d_type: what the kernel, podman and docker make of it."""
    with lab.step(f"xfs with ftype=0 (needs -m crc=0) on the storage disk, mounted at {STORAGE}"):
        mkfs = vm.succeed(f"mkfs.xfs -f -m crc=0 -n ftype=0 {DISK} 2>&1")
        lab.evidence("ftype0/mkfs.txt", mkfs)
        assert "V4 filesystems are deprecated" in mkfs, mkfs
        mount_storage(vm)
        assert ftype(lab, "ftype0") == 0

    with lab.step("the kernel mounts overlay on an ftype=0 upper, warning that it needs d_type"):
        marker = vm.mark_kernel_log("overlay mount")
        vm.succeed(f"mkdir -p /var/tmp/lower {STORAGE}/ovl/upper {STORAGE}/ovl/work /mnt/ovl && mount -t overlay "
                   f"overlay -o lowerdir=/var/tmp/lower,upperdir={STORAGE}/ovl/upper,workdir={STORAGE}/ovl/work "
                   "/mnt/ovl")
        kernel = "\n".join(text for _, text in vm.get_kernel_log_since(marker))
        lab.evidence("ftype0/kernel.txt", kernel)
        assert KERNEL_D_TYPE in kernel, kernel
        vm.succeed(f"umount /mnt/ovl && rm -rf {STORAGE}/ovl")

    with lab.step("without fuse-overlayfs, podman refuses overlay with the d_type error"):
        vm.succeed(f"dpkg-divert --local --rename --add {FUSE}")  # a host without fuse-overlayfs
        vm.fail("command -v fuse-overlayfs", 1)
        out = vm.fail("podman images", PODMAN_D_TYPE)
        lab.evidence("ftype0/podman.txt", out)
        assert PODMAN_D_TYPE in out, out
        assert FIELD_2019 not in out, out
        cached = vm.succeed(f"cat {RUNROOT}/overlay/overlay-false")  # kept until reboot: see ground-truth §6b
        lab.record("podman_caches_the_failure", f"{RUNROOT}/overlay/overlay-false")
        assert PODMAN_D_TYPE.removeprefix("Error: ") in cached, cached

    with lab.step("docker with storage-driver overlay2 does not start"):
        vm.write_file("/etc/docker/daemon.json", json.dumps({"storage-driver": "overlay2"}))
        journal = docker_fails(vm)
        lab.evidence("ftype0/docker-journal.txt", journal)
        assert DOCKER_D_TYPE in journal, journal
        lab.record("docker_restarts", int(vm.get_unit_properties("docker.service", "NRestarts")["NRestarts"]))


def _fuse_then_ftype1(lab: ScenarioContext, vm: Machine) -> None:
    """podman through fuse-overlayfs on ftype=0, then both engines on a reformatted ftype=1."""
    with lab.step("with fuse-overlayfs installed, podman silently runs on ftype=0 through it"):
        vm.succeed(f"dpkg-divert --local --rename --remove {FUSE} && rm -rf {RUNROOT}")
        store = podman_store(lab, "ftype0/podman-info-fuse.json")
        assert store["graphStatus"]["Supports d_type"] == "true", store  # what podman reports, not the disk
        fstype, _ = container_root(vm, "podman")
        assert fstype == "fuse.fuse-overlayfs", fstype
        lab.record("ftype0_podman_with_fuse_overlayfs", fstype)

    with lab.step("reformatted ftype=1: podman and docker run on kernel overlay"):
        vm.succeed("podman system reset --force && systemctl reset-failed docker.service && systemctl stop "
                   f"docker.socket && umount /var/lib/docker {STORAGE}")
        vm.succeed(f"mkfs.xfs -f -q {DISK}")
        mount_storage(vm)
        assert ftype(lab, "ftype1") == 1
        store = podman_store(lab, "ftype1/podman-info.json")
        assert store["graphStatus"]["Native Overlay Diff"] == "true", store
        assert container_root(vm, "podman")[0] == "overlay"
        vm.succeed("systemctl start docker.service", timeout=180)
        info = vm.succeed("docker info 2>&1")
        lab.evidence("ftype1/docker-info.txt", info)
        assert "Storage Driver: overlay2" in info and "Supports d_type: true" in info, info
        assert container_root(vm, "docker")[0] == "overlay"


def libpod_2158(lab: ScenarioContext) -> None:
    vm, user = lab.machine, lab.machine.user
    home = vm.succeed("echo $HOME", user=user).strip()
    uid = vm.succeed("id -u", user=user).strip()
    conf = f"{home}/.config/containers/storage.conf"
    with lab.step(f"rootless podman with a 2019 camel-case {conf}"):
        write_conf(lab, conf, CAMEL_CASE.format(uid=uid, home=home, fuse=FUSE), "camel-case")
        result = vm.execute("podman info --format json", user=user)
        lab.evidence("libpod-2158/camel-case-stderr.txt", result.stderr)
        warnings = result.stderr.replace('\\"', '"')  # logrus escapes the quotes inside msg="..."
        assert result.rc == 0, warnings
        keys = '["RunRoot" "GraphRoot" "GraphDriverName" "GraphDriverOptions"]'
        assert f'Failed to decode the keys {keys} from "{conf}"' in warnings, warnings
        assert f"The storage 'driver' option must be set in {conf} to guarantee proper operation" in warnings
        store = json.loads(result.stdout)["store"]
        lab.evidence("libpod-2158/camel-case-podman-info.json", json.dumps(store, indent=2))
        assert store["configFile"] == conf and "overlay.mount_program" not in store["graphOptions"], store
        fstype, options = container_root(vm, "podman", user=user)
        assert (fstype, "userxattr" in options) == ("overlay", True), (fstype, options)
        assert FIELD_2019 not in warnings
        lab.record("libpod_2158", {
            "field_error_reproduced": False,
            "what_podman_4_3_does": "warns that it failed to decode the camel-case keys, logs that the storage "
                                    "'driver' option must be set, ignores the file's mount_program and runs "
                                    "rootless on kernel overlay (userxattr): unprivileged overlay mounts work "
                                    "since Linux 5.11, so the 2019 \"'overlay' is not supported over xfs\" "
                                    "failure no longer happens",
        })

    with lab.step("rootless podman with the current [storage] format uses fuse-overlayfs"):
        vm.succeed("podman system reset --force", user=user)
        write_conf(lab, conf, CURRENT.format(uid=uid, home=home, fuse=FUSE), "current")
        result = vm.execute("podman info --format json", user=user)
        assert result.rc == 0 and "Failed to decode" not in result.stderr, result.stderr
        store = json.loads(result.stdout)["store"]
        lab.evidence("libpod-2158/current-podman-info.json", json.dumps(store, indent=2))
        assert store["graphOptions"]["overlay.mount_program"]["Executable"] == FUSE, store
        assert container_root(vm, "podman", user=user)[0] == "fuse.fuse-overlayfs"


def write_conf(lab: ScenarioContext, path: str, text: str, name: str) -> None:
    lab.machine.write_file(path, text, user=lab.machine.user)
    lab.evidence(f"libpod-2158/{name}-storage.conf", text)


def mount_storage(vm: Machine) -> None:
    """Mount the disk for both engines. Podman already ran at boot (podman-restart.service) and cached
    what the old storage supports in its runroot: forget that, as a reboot would."""
    vm.succeed(f"mkdir -p {STORAGE} /var/lib/docker && mount {DISK} {STORAGE} && mkdir -p {STORAGE}/docker && "
               f"mount --bind {STORAGE}/docker /var/lib/docker && rm -rf {RUNROOT}")


def ftype(lab: ScenarioContext, name: str) -> int:
    info = lab.machine.succeed(f"xfs_info {STORAGE}")
    lab.evidence(f"{name}/xfs_info.txt", info)
    return int(info.split("ftype=")[1][0])


def podman_store(lab: ScenarioContext, evidence: str) -> dict[str, Any]:
    store: dict[str, Any] = json.loads(lab.machine.succeed("podman info --format json"))["store"]
    lab.evidence(evidence, json.dumps(store, indent=2))
    assert store["graphDriverName"] == "overlay" and store["graphRoot"].startswith(STORAGE), store
    return store


def container_root(vm: Machine, engine: str, *, user: str = ROOT) -> tuple[str, str]:
    """Import the busybox image into `engine` and run it: its / mount's (type, options)."""
    image = busybox_image(vm, engine, user=user)
    run = f"{engine} run --rm --network none {image} cat /proc/self/mounts"
    mounts = vm.succeed(run, user=user, timeout=300)
    fields = next(line.split() for line in mounts.splitlines() if line.split()[1] == "/")
    return fields[2], fields[3]
