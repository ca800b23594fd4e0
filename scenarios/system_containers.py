"""system-containers: etcd -> flannel -> docker at boot, with etcd and flannel as system containers.

Recreates system-containers-intro.txt (atomic install --system, /exports/ templates, etcd then
flannel) and containers-storage-slides.txt (system containers started by systemd before docker).
Facts from ground-truth.md §8: there is no atomic CLI, flannel package or etcd v2 API on bookworm,
so the lab carries its own installer (lab/guest/atomic.py), a flannel stand-in that speaks etcd's
v3 API (scenarios/system-containers/flannel), and writes the network config with `etcdctl put`.
Docker is the host's docker.service, as on Atomic Host, configured through the drop-in the
flannel image installs. `ordering=broken` installs the same images with the ordering and
readiness dropped (`--set AFTER= --set BEFORE= --set SERVICE_TYPE=simple`) and etcd held back
until docker runs (`--set AFTER=docker.service`), so that the race the field lost by chance is
lost on every run: docker brings docker0 up on its own default subnet, not on flannel's.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from lab.containers import SYSTEM_CONTAINER_STAND_INS, build_system_images
from lab.context import GUEST_TOOLS, ScenarioContext
from lab.machine import Machine
from lab.scenario import Setup, by_stand_in, integer, reproduced, scenario

IMAGES = Path(__file__).parent / "system-containers"
CHECKOUTS = "/var/lib/containers/atomic"
PREFIX = "/atomic.io/network"
FETCH_FAILED = "Couldn't fetch network config"
STARTED, READY = "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"
DOCKER_DEFAULT_BRIDGE = "172.17.0.1/16"  # dockerd's built-in --bip, used when flannel's options are missing
DROP_IN = "/etc/systemd/system/docker.service.d/flannel.conf"


def build_and_install(lab: ScenarioContext) -> None:
    """The setup its runs restore from a checkpoint: the images built, etcd and flannel installed by the
    stand-in, ordered (correct), with no order and etcd held back until docker runs (broken), or with no
    order at all (race, the field's); etcd running with flannel's network config."""
    vm, ordering = lab.machine, lab.params["ordering"]
    with lab.step("build the etcd and flannel images as OCI layouts (no registry)"):
        atomic = lab.install_guest_tool("atomic")
        build_system_images(vm, atomic, IMAGES)
    unordered = "" if ordering == "correct" else " --set SERVICE_TYPE=simple"
    with lab.step("atomic install --system etcd; flannel's network config into etcd"):
        held_back = " --set AFTER=docker.service" if ordering == "broken" else (" --set AFTER= --set BEFORE="
                                                                                 if ordering == "race" else "")
        vm.succeed(f"atomic install --system{unordered}{held_back} oci:/root/images/etcd")
        vm.succeed("systemctl start etcd")
        vm.wait_until_succeeds("etcdctl endpoint health", timeout=120)  # not ordered: started, not ready
        config = json.dumps({"Network": lab.params["network"], "SubnetLen": 24, "Backend": {"Type": "vxlan"}})
        vm.succeed(f"etcdctl put {PREFIX}/config '{config}'")  # v3: bookworm's etcd 3.4 has the v2 API off
    with lab.step("atomic install --system --set ETCD_ENDPOINTS=... flannel, with docker's drop-in"):
        no_order = " --set AFTER= --set BEFORE=" if ordering != "correct" else ""
        vm.succeed(f"atomic install --system --set ETCD_ENDPOINTS=http://127.0.0.1:2379{unordered}{no_order}"
                   " oci:/root/images/flannel")
        vm.succeed("systemctl enable docker.service")


@scenario(
    "system-containers",
    "etcd and a flannel stand-in (no flannel package in bookworm) as runc system containers, then docker "
    "on flannel's subnet at boot (ordering: correct, broken, race)",
    image="lab-atomic",
    memory=1024,
    params={"ordering": "correct", "network": "10.40.0.0/16", "boots": integer(3)},
    choices={"ordering": ("correct", "broken", "race")},
    tags=("containers",),
    covers=(
        by_stand_in("atomic-install-system", "atomic install"),
        by_stand_in("exports-templates", "atomic install"),
        by_stand_in("flannel-lease", "flannel"),
        by_stand_in("atomic-uninstall", "atomic install"),
        reproduced("etcd-flannel-docker-order", "`race` runs the field's case, no order at all, for `boots` boots "
                                                "and reports how often docker0 came up outside flannel's lease"),
    ),
    stand_ins=SYSTEM_CONTAINER_STAND_INS,
    timeout=1800,
    setup=Setup("etcd-flannel-installed", build_and_install, reads=("ordering", "network"),
                files=(GUEST_TOOLS / "atomic.py",)),
)
def system_containers(lab: ScenarioContext) -> None:
    vm, ordering = lab.machine, lab.params["ordering"]
    with lab.step("what atomic install rendered: units, OCI configs, tmpfiles, docker's drop-in"):
        for name in ("etcd", "flannel"):
            keep_rendered(lab, vm, name)
        lab.evidence("docker-flannel.conf", vm.succeed(f"cat {DROP_IN}"), stand_in="flannel")
    if ordering == "race":
        _race(lab, vm, lab.params["boots"])
    else:
        with lab.step("reboot: systemd starts etcd, flannel and docker"):
            vm.reboot()
            boot = _boot(lab, vm)
        if ordering == "broken":
            _docker_won(lab, vm, boot)
        else:
            _in_order(lab, vm, boot)
    with lab.step("atomic uninstall removes the units and the containers"):
        vm.succeed("atomic uninstall flannel && atomic uninstall etcd")
        containers = vm.succeed("runc list")
        assert "flannel" not in containers and "etcd" not in containers, containers
        vm.fail("systemctl cat flannel.service", "No files found for flannel.service")


def _boot(lab: ScenarioContext, vm: Machine, label: str = "") -> dict[str, Any]:
    """What this boot did, read from the guest: docker0's address, flannel's lease, the units' times."""
    vm.wait_for_unit("docker.service")
    lease = vm.wait_until_succeeds("cat /run/flannel/subnet.env", timeout=300)  # later than docker, if unordered
    subnet = dict(line.split("=", 1) for line in lease.split())
    boot = {"docker0": vm.succeed("ip -4 -o addr show docker0").split()[3], "flannel": subnet["FLANNEL_SUBNET"],
            "mtu": subnet["FLANNEL_MTU"],
            "times": {unit: vm.get_unit_properties(unit, STARTED, READY) for unit in ("etcd", "flannel", "docker")},
            "fetch_failures": int(vm.succeed(f"journalctl -b -u flannel -o cat | grep -c \"{FETCH_FAILED}\" || "
                                             "true"))}
    lab.evidence(f"{label}boot-journal.txt", vm.succeed("journalctl -b -u etcd -u flannel -u docker "
                                                        "-o short-monotonic"))
    lab.record(f"{label}boot", boot)
    return boot


def _docker_won(lab: ScenarioContext, vm: Machine, boot: dict[str, Any]) -> None:
    with lab.step("docker won the race: docker0 on docker's default subnet, flannel's lease came later"):
        times = boot["times"]
        assert int(times["docker"][READY]) <= int(times["etcd"][STARTED]), times  # no lease before docker ran
        assert boot["docker0"] == DOCKER_DEFAULT_BRIDGE, boot
        subnets = vm.succeed("docker network inspect bridge -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}'")
        assert subnets.strip() == str(ipaddress.ip_interface(DOCKER_DEFAULT_BRIDGE).network), subnets


def _in_order(lab: ScenarioContext, vm: Machine, boot: dict[str, Any]) -> None:
    with lab.step("etcd was ready before flannel started, flannel before docker"):
        times = boot["times"]
        assert int(times["etcd"][READY]) <= int(times["flannel"][STARTED]), times
        assert int(times["flannel"][READY]) <= int(times["docker"][STARTED]), times
        chain = vm.succeed("systemd-analyze critical-chain docker.service")
        lab.evidence("critical-chain.txt", chain)
        units = re.findall(r"\w[\w@.-]*\.service", chain)
        assert units[:3] == ["docker.service", "flannel.service", "etcd.service"], chain
    with lab.step("docker's bridge and containers use flannel's subnet and MTU"):
        assert boot["docker0"] == boot["flannel"], boot
        network = ipaddress.ip_network(boot["flannel"], strict=False)
        subnets = vm.succeed("docker network inspect bridge -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}'")
        assert subnets.strip() == str(network), subnets
        vm.succeed(f"tar -C {CHECKOUTS}/flannel/rootfs -c . | docker import - lab/busybox")
        inside = vm.succeed("docker run --rm lab/busybox ip -4 -o addr show eth0").split()[3]
        mtu = vm.succeed("docker run --rm lab/busybox cat /sys/class/net/eth0/mtu").strip()
        assert ipaddress.ip_interface(inside).network == network, f"container got {inside}, not in {network}"
        assert mtu == boot["mtu"], f"the container's eth0 has MTU {mtu}, flannel's lease says {boot['mtu']}"
        lab.record("container_address", inside)


def _race(lab: ScenarioContext, vm: Machine, boots: int) -> None:
    """The field's case: no order between etcd, flannel and docker; each boot is read, none is forced."""
    outside = 0
    for number in range(1, boots + 1):
        with lab.step(f"boot {number} of {boots} with no order: where docker0 came up"):
            vm.reboot()
            boot = _boot(lab, vm, f"race/{number}/")
            on_lease = boot["docker0"] == boot["flannel"]
            # either flannel's lease reached docker in time or docker fell back to its own default bridge
            assert on_lease or boot["docker0"] == DOCKER_DEFAULT_BRIDGE, boot
            outside += not on_lease
    lab.record("docker0_outside_flannel_lease", f"{outside} of {boots} boots")


def keep_rendered(lab: ScenarioContext, vm: Machine, name: str) -> None:
    """The unit, OCI config and tmpfiles as the installer rendered them, into the evidence; the image's
    root filesystem checked out."""
    checkout = f"{CHECKOUTS}/{name}.0"
    vm.succeed(f"test -x {checkout}/rootfs/usr/bin/{name}d || test -x {checkout}/rootfs/usr/bin/{name}")
    for rendered in (f"{name}.service", "config.json", f"tmpfiles-{name}.conf", "info"):
        lab.evidence(f"{name}/{rendered}", vm.succeed(f"cat {checkout}/{rendered}"), stand_in="atomic install")
    assert vm.succeed(f"readlink {CHECKOUTS}/{name}").strip() == f"{name}.0"
    assert vm.succeed(f"systemctl is-enabled {name}").strip() == "enabled"
