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

from lab.containers import SYSTEM_CONTAINER_STAND_INS, build_system_images
from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import by_stand_in, partly, scenario

IMAGES = Path(__file__).parent / "system-containers"
CHECKOUTS = "/var/lib/containers/atomic"
PREFIX = "/atomic.io/network"
FETCH_FAILED = "Couldn't fetch network config"
STARTED, READY = "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic"
DOCKER_DEFAULT_BRIDGE = "172.17.0.1/16"  # dockerd's built-in --bip, used when flannel's options are missing
DROP_IN = "/etc/systemd/system/docker.service.d/flannel.conf"


@scenario(
    "system-containers",
    "etcd and a flannel stand-in (no flannel package in bookworm) as runc system containers, then docker "
    "on flannel's subnet at boot (ordering: correct, broken)",
    image="lab-atomic",
    memory=1024,
    params={"ordering": "correct", "network": "10.40.0.0/16"},
    choices={"ordering": ("correct", "broken")},
    tags=("containers",),
    covers=(
        by_stand_in("atomic-install-system", "atomic install"),
        by_stand_in("exports-templates", "atomic install"),
        by_stand_in("flannel-lease", "flannel"),
        by_stand_in("atomic-uninstall", "atomic install"),
        partly("etcd-flannel-docker-order", "the broken variant inverts the order; the field's race (no order, etcd "
                                            "late) is not run"),
    ),
    stand_ins=SYSTEM_CONTAINER_STAND_INS,
    timeout=1200,
)
def system_containers(lab: ScenarioContext) -> None:
    vm, broken = lab.machine, lab.params["ordering"] == "broken"

    with lab.step("build the etcd and flannel images as OCI layouts (no registry)"):
        atomic = lab.install_guest_tool("atomic")
        build_system_images(vm, atomic, IMAGES)
        for name in ("etcd", "flannel"):
            inspect = json.loads(vm.succeed(f"skopeo inspect oci:/root/images/{name}:{name}"))
            assert inspect["Labels"] == {"atomic.type": "system"}, inspect

    unordered = " --set SERVICE_TYPE=simple" if broken else ""
    with lab.step("atomic install --system etcd; flannel's network config into etcd"):
        vm.succeed(f"atomic install --system{unordered}{' --set AFTER=docker.service' if broken else ''} "
                   "oci:/root/images/etcd")
        keep_rendered(lab, vm, "etcd")
        vm.succeed("systemctl start etcd")
        vm.wait_until_succeeds("etcdctl endpoint health", timeout=120)  # ordering=broken: started, not ready
        config = json.dumps({"Network": lab.params["network"], "SubnetLen": 24, "Backend": {"Type": "vxlan"}})
        vm.succeed(f"etcdctl put {PREFIX}/config '{config}'")  # v3: bookworm's etcd 3.4 has the v2 API off

    with lab.step("atomic install --system --set ETCD_ENDPOINTS=... flannel, with docker's drop-in"):
        unordered_flannel = unordered + (" --set AFTER= --set BEFORE=" if broken else "")
        vm.succeed(f"atomic install --system --set ETCD_ENDPOINTS=http://127.0.0.1:2379{unordered_flannel}"
                   " oci:/root/images/flannel")
        keep_rendered(lab, vm, "flannel")
        lab.evidence("docker-flannel.conf", vm.succeed(f"cat {DROP_IN}"), stand_in="flannel")
        drop_ins = vm.succeed("systemctl show -p DropInPaths --value docker.service").split()
        assert DROP_IN in drop_ins, f"systemd does not read flannel's drop-in for docker: {drop_ins}"
        vm.succeed("systemctl enable docker.service")

    with lab.step("reboot: systemd starts etcd, flannel and docker"):
        vm.reboot()
        vm.wait_for_unit("docker.service")
        lease = vm.wait_until_succeeds("cat /run/flannel/subnet.env", timeout=300)  # later than docker, if broken
        subnet = dict(line.split("=", 1) for line in lease.split())
        bridge = vm.succeed("ip -4 -o addr show docker0").split()[3]
        times = {unit: vm.get_unit_properties(unit, STARTED, READY) for unit in ("etcd", "flannel", "docker")}
        fetch_failures = int(vm.succeed(f"journalctl -b -u flannel -o cat | grep -c \"{FETCH_FAILED}\" || true"))
        lab.evidence("boot-journal.txt", vm.succeed("journalctl -b -u etcd -u flannel -u docker -o short-monotonic"))
        lab.evidence("critical-chain.txt", chain := vm.succeed("systemd-analyze critical-chain docker.service"))
        lab.record("flannel_subnet", subnet["FLANNEL_SUBNET"])
        lab.record("docker0", bridge)
        lab.record("flannel_fetch_failures", fetch_failures)
        lab.record("unit_times_us", times)

    if broken:
        with lab.step("docker won the race: docker0 on docker's default subnet, flannel's lease came later"):
            assert int(times["docker"][READY]) <= int(times["etcd"][STARTED]), times  # no lease before docker ran
            assert bridge == DOCKER_DEFAULT_BRIDGE, f"docker0 {bridge}, not docker's default {DOCKER_DEFAULT_BRIDGE}"
            flannel_network = ipaddress.ip_network(lab.params["network"])
            assert not ipaddress.ip_interface(bridge).network.overlaps(flannel_network), bridge
            subnets = vm.succeed("docker network inspect bridge -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}'")
            assert subnets.strip() == str(ipaddress.ip_interface(DOCKER_DEFAULT_BRIDGE).network), subnets
    else:
        with lab.step("etcd was ready before flannel started, flannel before docker"):
            assert int(times["etcd"][READY]) <= int(times["flannel"][STARTED]), times
            assert int(times["flannel"][READY]) <= int(times["docker"][STARTED]), times
            units = re.findall(r"\w[\w@.-]*\.service", chain)
            assert units[:3] == ["docker.service", "flannel.service", "etcd.service"], chain

        with lab.step("docker's bridge and containers use flannel's subnet and MTU"):
            assert bridge == subnet["FLANNEL_SUBNET"], f"docker0 {bridge}, flannel {subnet['FLANNEL_SUBNET']}"
            ipam = vm.succeed("docker network inspect bridge -f '{{json .IPAM.Config}} {{json .Options}}'")
            config_json, options_json = ipam.split(" ", 1)
            network = ipaddress.ip_interface(subnet["FLANNEL_SUBNET"]).network
            assert json.loads(config_json)[0]["Subnet"] == str(network), ipam
            assert json.loads(options_json)["com.docker.network.driver.mtu"] == subnet["FLANNEL_MTU"], ipam
            vm.succeed(f"tar -C {CHECKOUTS}/flannel/rootfs -c . | docker import - lab/busybox")
            inside = vm.succeed("docker run --rm lab/busybox ip -4 -o addr show eth0").split()[3]
            assert ipaddress.ip_interface(inside).network == network, f"container got {inside}, not in {network}"
            lab.record("container_address", inside)

    with lab.step("atomic uninstall removes units, checkouts, tmpfiles and host files"):
        vm.succeed("atomic uninstall flannel && atomic uninstall etcd")
        for path in ("/etc/systemd/system/flannel.service", "/etc/systemd/system/etcd.service",
                     "/etc/tmpfiles.d/flannel.conf", "/etc/tmpfiles.d/etcd.conf",
                     "/etc/systemd/system/docker.service.d/flannel.conf",
                     f"{CHECKOUTS}/flannel", f"{CHECKOUTS}/flannel.0", f"{CHECKOUTS}/etcd.0"):
            vm.require_absent(path)
        containers = vm.succeed("runc list")
        assert "flannel" not in containers and "etcd" not in containers, containers
        vm.fail("systemctl cat flannel.service", "No files found for flannel.service")


def keep_rendered(lab: ScenarioContext, vm: Machine, name: str) -> None:
    """The unit, OCI config and tmpfiles as the installer rendered them, into the evidence; the image's
    root filesystem checked out."""
    checkout = f"{CHECKOUTS}/{name}.0"
    vm.succeed(f"test -x {checkout}/rootfs/usr/bin/{name}d || test -x {checkout}/rootfs/usr/bin/{name}")
    for rendered in (f"{name}.service", "config.json", f"tmpfiles-{name}.conf", "info"):
        lab.evidence(f"{name}/{rendered}", vm.succeed(f"cat {checkout}/{rendered}"), stand_in="atomic install")
    assert vm.succeed(f"readlink {CHECKOUTS}/{name}").strip() == f"{name}.0"
    assert vm.succeed(f"systemctl is-enabled {name}").strip() == "enabled"
