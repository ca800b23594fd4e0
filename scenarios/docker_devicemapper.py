"""docker-devicemapper: the Atomic host's docker: remote API, devicemapper mounts, read-only images, volumes.

atomic-host-operator-blog.txt, the Ansible role: `/etc/sysconfig/docker-network` with
`DOCKER_NETWORK_OPTIONS=-H unix:///var/run/docker.sock -H tcp://` ("managed by directly talking to the
remote Docker daemon's API"). fedora-atomic-wiki.txt, "The devicemapper Backend": `mount | grep
devicemapper`, "a mount point for each image and container layer", and "write-heavy load inside a container
… should generally be done to a volume". containers-storage-slides.txt: "Read/Only images offer better
security". Docker reads the blog's file through a drop-in as Atomic's unit did (Debian's unit reads
/etc/default/docker); everything asserted is dockerd's, the kernel's and LVM's.
"""

from __future__ import annotations

import shlex

from lab.containers import busybox_image, devicemapper, start_docker
from lab.context import ScenarioContext
from lab.lvm import ThinPool, create_thin_pool, lv_field, root_vg
from lab.machine import Machine
from lab.scenario import reproduced, scenario

NETWORK = "DOCKER_NETWORK_OPTIONS=-H unix:///var/run/docker.sock -H tcp://\n"  # the blog's line, as it is
DROP_IN = ("[Service]\nEnvironmentFile=-/etc/sysconfig/docker-network\nExecStart=\n"
           "ExecStart=/usr/sbin/dockerd $DOCKER_NETWORK_OPTIONS --containerd=/run/containerd/containerd.sock\n")
INSECURE = "Binding to IP address without --tlsverify is insecure"
WRITE_MIB = 128


@scenario(
    "docker-devicemapper",
    "the Atomic host's docker: the blog's DOCKER_NETWORK_OPTIONS remote API, one devicemapper mount per "
    "running layer, read-only containers, writes to a volume against the container's root (wiki, blog, talk)",
    image="lab-atomic",
    memory=1024,
    tags=("containers", "storage", "catalog"),
    covers=(
        reproduced("docker-remote-api", "`-H tcp://` with no address is tcp://localhost:2375"),
        reproduced("devicemapper-mounts", "docker 20.10 mounts a layer only while its container runs, and "
                                          "keeps no directory under mnt/ for the others"),
        reproduced("readonly-images", "shown with `docker run --read-only`; no system container here"),
        reproduced("volume-write-heavy", "the throughputs are a figure, recorded side by side; what is "
                                         "asserted is where the blocks go"),
    ),
    timeout=1200,
)
def docker_devicemapper(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("the blog's docker-network options through a drop-in; docker on a devicemapper thin pool"):
        vm.write_file("/etc/sysconfig/docker-network", NETWORK)
        vm.write_file("/etc/systemd/system/docker.service.d/atomic-network.conf", DROP_IN)
        vm.succeed("systemctl daemon-reload")
        pool = create_thin_pool(vm, root_vg(lab.profile), "1G")
        lab.evidence("docker-info.txt", start_docker(vm, devicemapper(pool.device)))
    _remote_api(lab, vm)
    image = busybox_image(vm)
    _mounts(lab, vm, image)
    _read_only(lab, vm, image)
    _volume_against_root(lab, vm, image, pool)


def _remote_api(lab: ScenarioContext, vm: Machine) -> None:
    with lab.step("the remote API: dockerd listens on 127.0.0.1:2375 and answers there, and warns"):
        listening = vm.succeed("ss -Hltnp 'sport = :2375'")
        lab.evidence("ss-2375.txt", listening)
        assert "127.0.0.1:2375" in listening and "dockerd" in listening, listening
        driver = vm.succeed("docker -H tcp://127.0.0.1:2375 info --format '{{.Driver}}'").strip()
        assert driver == "devicemapper", driver
        journal = vm.succeed("journalctl -b -u docker.service -o cat --no-pager")
        warned = [line for line in journal.splitlines() if "tls" in line.lower() or "Binding" in line]
        lab.evidence("dockerd-warnings.txt", "\n".join(warned))
        assert any(INSECURE in line for line in warned), warned


def _mounts(lab: ScenarioContext, vm: Machine, image: str) -> None:
    mounts = "mount | grep -c ' on /var/lib/docker/devicemapper/mnt/' || true"
    with lab.step("two running containers: two devicemapper mounts; one stopped: one"):
        assert vm.succeed(mounts).strip() == "0"
        for name in ("one", "two"):
            vm.succeed(f"docker run -d --name {name} {image} sleep 600", timeout=300)
        lab.evidence("mount-devicemapper.txt", vm.succeed("mount | grep devicemapper"))
        assert vm.succeed(mounts).strip() == "2"
        vm.succeed("docker rm -f two")
        assert vm.succeed(mounts).strip() == "1"
        layers = vm.succeed("ls /var/lib/docker/devicemapper/mnt").split()
        lab.record("mnt_directories", layers)
        assert len(layers) == 1, layers  # 20.10 removes a layer's directory when it unmounts it


def _read_only(lab: ScenarioContext, vm: Machine, image: str) -> None:
    with lab.step("a read-only container cannot write its root; it writes a volume"):
        vm.fail(f"docker run --rm --read-only {image} touch /written", "Read-only file system")
        vm.succeed(f"mkdir -p /srv/volume && docker run --rm --read-only -v /srv/volume:/data {image} "
                   "touch /data/written")
        vm.succeed("test -f /srv/volume/written")


def _volume_against_root(lab: ScenarioContext, vm: Machine, image: str, pool: ThinPool) -> None:
    # kept until measured: removing the container frees its thin device's blocks
    timed = ("t0=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero of={} bs=1M count=" + str(WRITE_MIB) +
             " conv=fsync 2>/dev/null; t1=$(cut -d' ' -f1 /proc/uptime); "
             "awk \"BEGIN {{ print int(($t1 - $t0) * 1000) }}\"")
    with lab.step(f"{WRITE_MIB} MiB written to the container's root fill the thin pool; to a volume, the host's"):
        figures = {}
        for where, path in (("volume", "/data/big"), ("container root", "/big")):
            before = float(lv_field(vm, pool.lv, "data_percent"))
            command = shlex.quote(timed.format(path))
            millis = int(vm.succeed(f"docker run --name writer -v /srv/volume:/data {image} sh -c {command}",
                                    timeout=600).strip())
            grew = float(lv_field(vm, pool.lv, "data_percent")) - before
            vm.succeed("docker rm writer")
            figures[where] = {"MiB/s": round(WRITE_MIB / max(millis, 1) * 1000, 1),
                              "pool_data_percent_grew": round(grew, 2)}
        lab.record("write_figures", figures)
        assert figures["volume"]["pool_data_percent_grew"] < 1.0, figures
        assert figures["container root"]["pool_data_percent_grew"] >= WRITE_MIB / 1024 * 100 * 0.9, figures
