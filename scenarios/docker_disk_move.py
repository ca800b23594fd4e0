"""docker-disk-move: docker's storage and a service's data on their own disk, moved to another Atomic host.

atomic-host-operator-blog.txt, "persistent data": the data lives on a second disk "so we can then move
the disk around to any other Atomic host and the service can be immediately available on the new
host". Here the disk holds a VG with docker's thin pool, docker's own metadata (/var/lib/docker) and the
service's data. Host 1 deactivates and exports the VG (`vgexport`), the disk is unplugged and plugged
into host 2, which imports and activates it; its docker lists and runs the image host 1 stored, on the
data host 1 wrote. On the way: an exported VG is refused by `vgchange` on host 2, and docker pointed at
the moved pool without the moved /var/lib/docker refuses it as thinpool-reuse shows ("Unable to take
ownership of thin-pool"): the pool alone is not docker's data.
"""

from __future__ import annotations

import json

from lab.containers import BUSYBOX, busybox_image, devicemapper, docker_fails, start_docker
from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, vg_field
from lab.machine import Machine
from lab.scenario import Disk, Node, Setup, reproduced, scenario

VG = "persist"  # the moved disk's VG (the hosts' own root VG is atomicos on both)
POOL = "docker-pool"
DISK = "/dev/disk/by-id/virtio-persist"
MOUNTS = {"lib": "/var/lib/docker", "data": "/srv/data"}
OWNERSHIP = "devmapper: Unable to take ownership of thin-pool ({}) that already has used data blocks"


def docker_on_the_disk(lab: ScenarioContext) -> None:
    """The setup its runs restore from a checkpoint: on host1, VG persist on the disk holds docker's pool,
    /var/lib/docker and a service's data; docker runs there and a container wrote its token."""
    one = lab.machines["host1"]
    with lab.step("host1: docker's pool, /var/lib/docker and the data on VG persist; a service writes"):
        pool = _make_volume_group(one)
        start_docker(one, _daemon(pool))
        image = busybox_image(one)
        token = one.succeed("cat /proc/sys/kernel/random/uuid").strip()
        one.succeed(f"docker run --rm -v /srv/data:/data {image} sh -c 'echo {token} > /data/token'", timeout=300)


@scenario(
    "docker-disk-move",
    "docker's thin pool, metadata and a service's data on one disk, exported, moved to a second Atomic host "
    "and imported there (operator blog: \"move the disk around to any other Atomic host\")",
    image="lab-atomic",
    memory=1024,
    machines={"host1": Node(disks=(Disk("4G", "persist"),)), "host2": Node()},
    tags=("storage", "containers", "catalog"),
    covers=(
        reproduced("disk-move"),
    ),
    timeout=1500,
    setup=Setup("docker-on-the-persist-disk", docker_on_the_disk),
)
def docker_disk_move(lab: ScenarioContext) -> None:
    one, two = lab.machines["host1"], lab.machines["host2"]
    pool = ThinPool(VG, POOL)
    with lab.step("host1: docker runs on the pool in VG persist, its /var/lib/docker and the data there too"):
        info = one.succeed("docker info")
        assert f"Pool Name: {pool.dm_name}" in info, info
        for name, path in MOUNTS.items():
            source = one.succeed(f"findmnt -no SOURCE {path}").strip()
            assert source == f"/dev/mapper/{VG}-{name}", f"{path} is on {source}"
        token = one.succeed("cat /srv/data/token").strip()
        lab.record("images_on_host1", one.succeed("docker images --format '{{.Repository}} {{.ID}}'").strip())

    with lab.step("host1 lets go: docker stopped, unmounted, VG deactivated and exported; the disk moves"):
        one.succeed("systemctl stop docker.service docker.socket containerd.service && "
                    f"umount {MOUNTS['lib']} {MOUNTS['data']} && vgchange -an {VG} && vgexport {VG}")
        attr = vg_field(one, VG, "vg_attr")
        assert attr[2] == "x", f"vgs shows {VG} as {attr!r}, not exported"
        lab.move_disk("persist", one, two)

    with lab.step("host2 sees an exported VG and may not activate it until it imports it"):
        scan, node = two.succeed("pvscan --cache 2>&1"), two.succeed(f"readlink -f {DISK}").strip()
        assert f"PV {node} ignore exported VG" in scan, scan
        refused = two.fail(f"vgchange -ay {VG} 2>&1", f"Volume group {VG} is exported")
        lab.evidence("vgchange-exported.txt", scan + refused)
        two.succeed(f"vgimport {VG} && vgchange -ay {VG}")
        lab.evidence("lvs-host2.txt", two.succeed(f"lvs -a -o +devices {VG}"))

    with lab.step("the pool alone is not docker's data: docker on host2 without the moved metadata refuses it"):
        two.succeed(f"mkdir -p {MOUNTS['data']} && mount /dev/{VG}/data {MOUNTS['data']}")
        two.write_file("/etc/docker/daemon.json", json.dumps(_daemon(pool)))
        journal = docker_fails(two)
        lab.evidence("docker-journal-without-metadata.txt", journal)
        assert OWNERSHIP.format(pool.dm_name) in journal, journal
        two.succeed("systemctl stop docker.socket; systemctl reset-failed docker.service; rm -rf /var/lib/docker")

    with lab.step("with the moved /var/lib/docker, host2's docker lists host1's image and runs it on host1's data"):
        two.succeed(f"mkdir -p {MOUNTS['lib']} && mount /dev/{VG}/lib {MOUNTS['lib']}")
        info = start_docker(two, _daemon(pool))
        lab.evidence("docker-info-host2.txt", info)
        assert f"Pool Name: {pool.dm_name}" in info, info
        listed = two.succeed("docker images --format '{{.Repository}} {{.ID}}'").strip()
        assert listed == lab.facts["images_on_host1"], listed
        assert two.succeed(f"docker run --rm -v /srv/data:/data {BUSYBOX} cat /data/token").strip() == token


def _make_volume_group(vm: Machine) -> ThinPool:
    """VG persist on the whole disk: xfs LVs for /var/lib/docker and the data, docker's thin pool."""
    vm.succeed(f"pvcreate -y {DISK} && vgcreate {VG} {DISK}")
    for name, size in (("lib", "512M"), ("data", "320M")):  # xfs takes 300 MB at least
        vm.succeed(f"lvcreate -y -L {size} -n {name} {VG} && mkfs.xfs -q /dev/{VG}/{name} && "
                   f"mkdir -p {MOUNTS[name]} && mount /dev/{VG}/{name} {MOUNTS[name]}")
    return create_thin_pool(vm, VG, "90%FREE", POOL)


def _daemon(pool: ThinPool) -> dict[str, object]:
    return devicemapper(pool.device)

