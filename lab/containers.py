"""Container images made inside a guest from its own busybox: no registry is needed or reachable."""

from __future__ import annotations

import json
from collections.abc import Mapping

from lab.machine import Machine
from lab.machine.shell import ROOT

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


def start_docker(vm: Machine, daemon_json: Mapping[str, object]) -> str:
    """Write /etc/docker/daemon.json and start docker; returns `docker info` with its warnings."""
    vm.write_file("/etc/docker/daemon.json", json.dumps(daemon_json))
    vm.succeed("systemctl start docker.service", timeout=300)
    return vm.succeed("docker info 2>&1")


def docker_fails(vm: Machine, *, start: bool = True, timeout: float = 300) -> str:
    """Docker failing to start, once systemd has given up restarting it (`start`: start it now, else
    it was started at boot); returns the daemon's journal of this boot."""
    if start:
        vm.fail("systemctl start docker.service", timeout=timeout)
    vm.wait_until_succeeds("systemctl is-failed --quiet docker.service", timeout=timeout)  # after its restarts
    return vm.succeed("journalctl -b -u docker.service -o cat --no-pager")
