"""flannel-two-hosts: one etcd, the flannel stand-in on two hosts, a distinct subnet and docker0 on each.

system-containers-intro.txt: etcd runs as a system container, flannel on each host reads its network
config from that etcd, leases a subnet there, and docker on the host uses it. Here etcd (Debian's binary,
as in system-containers) runs on host1 and listens on the hosts' network too; flannel (the lab's stand-in,
bookworm has no flannel) runs on both hosts against host1's etcd. What is asserted comes from etcd and
the hosts: etcd holds exactly two leases, each host's docker0 and docker's bridge network sit in one of
them, and the two hosts' subnets differ. (The leases' PublicIP is the stand-in's own writing: recorded.)

Then what the kernel and docker do with the leases. The stand-in runs no backend, so no host has a route to
the other's subnet and a container on host1 cannot reach one on host2. The lab adds the routes flannel's
host-gw backend would (each subnet via its host's address on the private network): the packets now reach
host2, where docker's FORWARD policy (DROP since docker 1.13) drops them, as the kernel's counter shows;
with FORWARD accepting the flannel network, as flanneld >= 0.10 arranges, the container on host1 reaches
the one on host2. Each container's MTU is the lease's 1450 (vxlan's), the hosts' network's 1500.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path

from lab.containers import SYSTEM_CONTAINER_STAND_INS, build_system_images, busybox_image
from lab.context import GUEST_TOOLS, ScenarioContext
from lab.machine import Machine
from lab.scenario import Node, Setup, StandIn, by_stand_in, scenario

IMAGES = Path(__file__).parent / "system-containers"
PREFIX = "/atomic.io/network"
HOST_GW = StandIn("host-gw routes", "(this scenario) adds each host's route to the other's subnet via its address "
                  "on the private network, as flannel's host-gw backend does", "watch etcd for new leases or "
                  "remove a route when a lease expires")
DROPPED = "iptables -L FORWARD -n -v -x | sed -n 's/^Chain FORWARD (policy DROP \\([0-9]*\\) packets.*/\\1/p'"


def images_on_both_hosts(lab: ScenarioContext) -> None:
    """The setup its runs restore from a checkpoint: the images built on host1 and copied to host2, the
    stand-in atomic installed on both."""
    one, two = lab.machines["host1"], lab.machines["host2"]
    with lab.step("the etcd and flannel images built on host1 (OCI layouts, no registry), copied to host2"):
        build_system_images(one, lab.install_guest_tool("atomic", one), IMAGES)
        lab.install_guest_tool("atomic", two)
        one.succeed("tar -C /root -cf /tmp/images.tar images && chmod 0644 /tmp/images.tar")  # the login user copies
        lab.copy_between(one, "/tmp/images.tar", two, "/tmp/images.tar")
        two.succeed("tar -C /root -xf /tmp/images.tar && rm /tmp/images.tar")


@scenario(
    "flannel-two-hosts",
    "one etcd and flannel on two hosts: each host leases its own subnet from the shared etcd, docker0 on each "
    "sits in it (system containers intro)",
    image="lab-atomic",
    memory=1024,
    machines={"host1": Node(), "host2": Node()},
    params={"network": "10.40.0.0/16"},
    tags=("containers", "catalog"),
    covers=(
        by_stand_in("flannel-lease", "flannel"),
    ),
    stand_ins=(*SYSTEM_CONTAINER_STAND_INS, HOST_GW),
    timeout=1500,
    setup=Setup("images-on-both-hosts", images_on_both_hosts, files=(GUEST_TOOLS / "atomic.py",)),
)
def flannel_two_hosts(lab: ScenarioContext) -> None:
    one, two = lab.machines["host1"], lab.machines["host2"]
    hosts = {"host1": one, "host2": two}
    address = {name: vm.address_of(name) for name, vm in hosts.items()}
    lab.record("addresses", address)

    with lab.step("both hosts hold the etcd and flannel images (OCI layouts) and the stand-in atomic"):
        for vm in hosts.values():
            for name in ("etcd", "flannel"):
                vm.succeed(f"skopeo inspect oci:/root/images/{name}:{name} >/dev/null")
            vm.succeed("command -v atomic")

    with lab.step("host1: etcd as a system container, listening on the hosts' network; flannel's config in it"):
        endpoint = f"http://{address['host1']}:2379"
        one.succeed(f"atomic install --system --set ETCD_LISTEN_CLIENT_URLS={endpoint},http://127.0.0.1:2379 "
                    "oci:/root/images/etcd")
        one.succeed("systemctl start etcd")
        one.wait_until_succeeds("etcdctl endpoint health", timeout=120)
        config = json.dumps({"Network": lab.params["network"], "SubnetLen": 24, "Backend": {"Type": "vxlan"}})
        one.succeed(f"etcdctl put {PREFIX}/config '{config}'")
        two.wait_for_open_port(2379, host="host1")

    with lab.step("flannel on both hosts against host1's etcd, then docker"):
        for name, vm in hosts.items():
            vm.succeed(f"atomic install --system --set ETCD_ENDPOINTS={endpoint} "
                       f"--set FLANNEL_PUBLIC_IP={address[name]} oci:/root/images/flannel")
            vm.succeed("systemctl start flannel.service && systemctl start docker.service", timeout=300)

    with lab.step("etcd holds two leases; each host's docker0 and bridge network sit in one of them, not the same"):
        leases = json.loads(one.succeed(f"etcdctl get --prefix {PREFIX}/subnets/ -w json"))
        stored = {str(_subnet(kv["key"])): json.loads(_b64(kv["value"]))["PublicIP"] for kv in leases.get("kvs", [])}
        lab.evidence("etcd-leases.json", json.dumps(stored, indent=2), stand_in="flannel")
        lab.record("leases", stored)  # PublicIP is what the stand-in wrote: recorded, not asserted
        assert len(stored) == 2, f"etcd's leases: {stored}"
        network = ipaddress.ip_network(lab.params["network"])
        bridges = {}
        for name, vm in hosts.items():
            bridge = ipaddress.ip_interface(vm.succeed("ip -4 -o addr show docker0").split()[3])
            inspect = vm.succeed("docker network inspect bridge -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}'")
            lab.record(f"docker0_{name}", str(bridge))
            assert str(bridge.network) in stored and bridge.network.subnet_of(network), \
                f"{name}: docker0 {bridge} is in none of etcd's leases {sorted(stored)}"
            assert inspect.strip() == str(bridge.network), f"{name}: docker's bridge network {inspect.strip()}"
            bridges[name] = bridge.network
        assert bridges["host1"] != bridges["host2"], f"both hosts' docker0 in {bridges['host1']}"
    _between_containers(lab, hosts, address, bridges)


def _between_containers(lab: ScenarioContext, hosts: dict[str, Machine], address: dict[str, str],
                        bridges: dict[str, ipaddress.IPv4Network]) -> None:
    one, two = hosts["host1"], hosts["host2"]
    image = {name: busybox_image(vm) for name, vm in hosts.items()}
    two.succeed(f"docker run -d --name target {image['host2']} sleep 3600")
    target = two.succeed("docker inspect -f '{{.NetworkSettings.IPAddress}}' target").strip()
    ping = f"docker run --rm {image['host1']} ping -c 2 -W 2 {target}"
    with lab.step("no backend: host1 routes host2's subnet out of its default route, and the ping is lost"):
        route = one.succeed(f"ip route get {target}")
        lab.record("route_without_backend", route.strip())
        assert f"via {address['host2']}" not in route and "dev eth0" in route, route
        one.fail(ping, "100% packet loss")
    with lab.step("host-gw routes added: the packets reach host2, where docker's FORWARD policy drops them"):
        for name, vm in hosts.items():
            other = "host2" if name == "host1" else "host1"
            vm.succeed(f"ip route replace {bridges[other]} via {address[other]}")
        assert f"via {address['host2']}" in one.succeed(f"ip route get {target}")
        before = int(two.succeed(DROPPED))
        one.fail(ping, "100% packet loss")
        dropped = int(two.succeed(DROPPED)) - before
        lab.record("dropped_by_forward_policy", dropped)
        assert dropped >= 1, "host2's FORWARD policy dropped no packet"
    with lab.step("FORWARD accepts the flannel network: the container on host1 reaches the one on host2"):
        network = lab.params["network"]
        for vm in hosts.values():
            vm.succeed(f"iptables -I FORWARD -s {network} -j ACCEPT && iptables -I FORWARD -d {network} -j ACCEPT")
        lab.evidence("ping.txt", one.succeed(ping))
    with lab.step("MTUs: the containers' eth0 has the lease's, the hosts' network its own"):
        words = one.succeed(f"ip -o route get {address['host2']}").split()
        device = words[words.index("dev") + 1]
        mtus = {"container": one.succeed(f"docker run --rm {image['host1']} cat /sys/class/net/eth0/mtu").strip(),
                "lease": one.succeed("sed -n 's/^FLANNEL_MTU=//p' /run/flannel/subnet.env").strip(),
                "hosts' network": one.succeed(f"cat /sys/class/net/{device}/mtu").strip()}
        lab.record("mtu", mtus)
        assert mtus["container"] == mtus["lease"], mtus

def _subnet(key_b64: str) -> ipaddress.IPv4Network:
    """A lease key (`…/subnets/10.40.7.0-24`) as the network it names."""
    return ipaddress.ip_network(_b64(key_b64).rsplit("/", 1)[1].replace("-", "/"))


def _b64(text: str) -> str:
    return base64.b64decode(text).decode()
