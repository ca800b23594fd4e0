"""flannel-two-hosts: one etcd, the flannel stand-in on two hosts, a distinct subnet and docker0 on each.

system-containers-intro.txt: etcd runs as a system container, flannel on each host reads its network
config from that etcd, leases a subnet there, and docker on the host uses it. Here etcd (Debian's binary,
as in system-containers) runs on host1 and listens on the hosts' network too; flannel (the lab's stand-in,
bookworm has no flannel) runs on both hosts against host1's etcd. What is asserted comes from etcd and
the hosts: etcd holds exactly two leases, each host's docker0 and docker's bridge network sit in one of
them, and the two hosts' subnets differ. (The leases' PublicIP is the stand-in's own writing: recorded.)
"""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path

from lab.containers import SYSTEM_CONTAINER_STAND_INS, build_system_images
from lab.context import ScenarioContext
from lab.scenario import Node, by_stand_in, scenario

IMAGES = Path(__file__).parent / "system-containers"
PREFIX = "/atomic.io/network"


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
    stand_ins=SYSTEM_CONTAINER_STAND_INS,
    timeout=1500,
)
def flannel_two_hosts(lab: ScenarioContext) -> None:
    one, two = lab.machines["host1"], lab.machines["host2"]
    hosts = {"host1": one, "host2": two}
    address = {name: vm.succeed(f"getent hosts {name}").split()[0] for name, vm in hosts.items()}
    lab.record("addresses", address)

    with lab.step("the etcd and flannel images built on host1 (OCI layouts, no registry), copied to host2"):
        build_system_images(one, lab.install_guest_tool("atomic", one), IMAGES)
        lab.install_guest_tool("atomic", two)
        one.succeed("tar -C /root -cf /tmp/images.tar images && chmod 0644 /tmp/images.tar")  # the login user copies
        lab.copy_between(one, "/tmp/images.tar", two, "/tmp/images.tar")
        two.succeed("tar -C /root -xf /tmp/images.tar && skopeo inspect oci:/root/images/flannel:flannel >/dev/null")

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

def _subnet(key_b64: str) -> ipaddress.IPv4Network:
    """A lease key (`…/subnets/10.40.7.0-24`) as the network it names."""
    return ipaddress.ip_network(_b64(key_b64).rsplit("/", 1)[1].replace("-", "/"))


def _b64(text: str) -> str:
    return base64.b64decode(text).decode()
