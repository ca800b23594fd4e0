"""Container images made inside a guest from its own busybox: no registry is needed or reachable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from lab.machine import Machine
from lab.machine.shell import ROOT
from lab.standin import StandIn

# The lab's stand-ins in the system-container scenarios (bookworm has no atomic CLI and no flannel)
SYSTEM_CONTAINER_STAND_INS = (
    StandIn("atomic install", "(lab/guest/atomic.py) builds OCI images and installs them as runc system "
            "containers from their exports/ templates, as `atomic install --system` did",
            "pull from a registry, keep images in ostree, update or roll a container back"),
    StandIn("flannel", "(scenarios/system-containers/flannel) leases each host a /24 from etcd in one "
            "transaction, reuses the one its address holds, and writes /run/flannel/subnet.env and docker's "
            "options, as flanneld does",
            "run a vxlan (or any) backend, route between hosts' subnets or set the overlay's MTU"),
)
ROOTFS_TAR = "/var/tmp/lab-busybox-rootfs.tar"
BUSYBOX = "localhost/lab/busybox"
# One static busybox with relative applet links (`busybox --install -s` would link to this host path).
_MAKE_ROOTFS = (f"test -f {ROOTFS_TAR} || (set -e; d=$(mktemp -d); mkdir $d/bin; cp /bin/busybox $d/bin/; "
                "cd $d/bin; for applet in $(./busybox --list | grep -vx busybox); do ln -s busybox $applet; done; "
                f"tar -C $d -cf {ROOTFS_TAR} .; chmod 0644 {ROOTFS_TAR}; rm -rf $d)")


def busybox_image(vm: Machine, engine: str = "docker", *, user: str = ROOT) -> str:
    """Import the busybox rootfs into `engine` (docker or podman, as `user`); returns the image name."""
    vm.succeed(_MAKE_ROOTFS)
    vm.succeed(f"{engine} import {ROOTFS_TAR} {BUSYBOX}", user=user)
    return BUSYBOX


def devicemapper(thinpooldev: str, *options: str) -> dict[str, object]:
    """daemon.json for docker's devicemapper driver on a thin pool (`ThinPool.device`), with more
    `--storage-opt`s (`dm.min_free_space=10%`, `dm.use_deferred_removal=true`)."""
    return {"storage-driver": "devicemapper", "storage-opts": [f"dm.thinpooldev={thinpooldev}", *options]}


def start_docker(vm: Machine, daemon_json: Mapping[str, object]) -> str:
    """Write /etc/docker/daemon.json and start docker; returns `docker info` with its warnings."""
    vm.write_file("/etc/docker/daemon.json", json.dumps(daemon_json))
    vm.succeed("systemctl start docker.service", timeout=300)
    return vm.succeed("docker info 2>&1")


def docker_fails(vm: Machine, *, start: bool = True, timeout: float = 300) -> str:
    """Docker failing to start, once systemd has given up restarting it (`start`: start it now, else
    it was started at boot); returns the daemon's journal of this boot."""
    if start:
        vm.fail("systemctl start docker.service", "Job for docker.service failed", timeout=timeout)
    vm.wait_until_succeeds("systemctl is-failed --quiet docker.service", timeout=timeout)  # after its restarts
    return vm.succeed("journalctl -b -u docker.service -o cat --no-pager")


def build_system_images(vm: Machine, atomic: str, sources: Path) -> None:
    """The etcd and flannel system container images built in the guest from `sources` (their config.json,
    manifest.json and service templates) by the lab's stand-in `atomic` (its path in the guest), as OCI
    layouts at /root/images/{etcd,flannel}: no registry."""
    vm.copy_tree_to(sources, "/root/system-containers")
    vm.succeed(f"cd /root/system-containers && {atomic} build etcd --tag etcd --output /root/images/etcd"
               " --host-binary /usr/bin/etcd")
    vm.succeed(f"cd /root/system-containers && {atomic} build flannel --tag flannel --output /root/images/flannel"
               " --host-binary /bin/busybox --host-binary /usr/bin/etcdctl --host-binary /usr/bin/systemd-notify")
