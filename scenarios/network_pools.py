"""network-pools: docker runs out of default address pools for new networks.

atomic-host-operator-blog.txt ("could not find an available, non-overlapping IPv4 address
pool"): docker-compose projects each create a network until docker refuses; the operator
counted 31 and guessed at a /27. The real number comes from docker's default local address
pools (libnetwork ipamutils): 172.17.0.0/16 ... 172.31.0.0/16 as fifteen /16 networks and
192.168.0.0/16 as sixteen /20 networks, 31 in all, one of them taken by docker0. Both fixes from
the field are shown: pruning unused networks, and larger `default-address-pools`.
"""

from __future__ import annotations

import ipaddress
import json

from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import partly, reproduced, scenario

EXHAUSTED = ("could not find an available, non-overlapping IPv4 address pool among the defaults to assign "
             "to the network")
# docker 20.10's default local pools (base, size of each network), as libnetwork's ipamutils lists them
DEFAULT_POOLS = [("172.17.0.0/16", 16), ("172.18.0.0/16", 16), ("172.19.0.0/16", 16), ("172.20.0.0/14", 16),
                 ("172.24.0.0/14", 16), ("172.28.0.0/14", 16), ("192.168.0.0/16", 20)]
WIDER_POOL: dict[str, str | int] = {"base": "10.200.0.0/16", "size": 24}


@scenario(
    "network-pools",
    "Docker networks until the default address pools run out (operator blog: \"non-overlapping IPv4 "
    "address pool\"); fixes: network prune, default-address-pools",
    image="lab-atomic",
    memory=1024,
    params={"extra_networks": 2},
    tags=("containers", "catalog"),
    covers=(
        reproduced("network-pools-exhausted"),
        partly("network-count", "`docker network ls` counts 33 with the built-in networks, and `prune` frees them, "
                                "not `rm`"),
    ),
    timeout=1500,
)
def network_pools(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("docker with its default address pools"):
        vm.succeed("systemctl start docker.service", timeout=300)
        bridge = network_subnets(vm, "bridge")
        assert bridge == ["172.17.0.0/16"], bridge

    with lab.step("create networks until docker refuses"):
        created, refusal = create_until_refused(vm, "field", 64)
        lab.evidence("exhausted.txt", refusal)
        assert EXHAUSTED in refusal, refusal
        expected = default_pool_count() - 1  # docker0 holds one
        lab.record("networks_before_refusal", created)
        lab.record("why", f"{default_pool_count()} default pools (fifteen /16 in 172.17-172.31, sixteen /20 in "
                          "192.168.0.0/16), one taken by docker0")
        assert created == expected, f"{created} networks fit, the default pools explain {expected}"
        listed = int(vm.succeed("docker network ls -q | wc -l"))  # the blog's own count
        lab.record("docker_network_ls_count", listed)
        assert listed == created + 3  # + bridge, host, none

    with lab.step("fix 1: docker network prune frees the pools of unused networks"):
        out = vm.succeed("docker network prune --force")
        lab.evidence("prune.txt", out)
        vm.succeed("docker network create after-prune")

    with lab.step(f"fix 2: default-address-pools {WIDER_POOL['base']} in /{WIDER_POOL['size']} networks"):
        vm.succeed("docker network prune --force")
        vm.write_file("/etc/docker/daemon.json", json.dumps({"default-address-pools": [WIDER_POOL]}))
        vm.succeed("systemctl restart docker.service", timeout=300)
        wanted = default_pool_count() + lab.params["extra_networks"]
        created, refusal = create_until_refused(vm, "wide", wanted)
        assert created == wanted, f"only {created} of {wanted} networks: {refusal}"
        pool = ipaddress.IPv4Network(str(WIDER_POOL["base"]))
        subnets = network_subnets(vm, f"wide-{wanted}")
        assert subnets and all(ipaddress.IPv4Network(s).subnet_of(pool) for s in subnets), subnets
        lab.record("networks_with_wider_pool", created)


def default_pool_count() -> int:
    return sum(2 ** (size - ipaddress.IPv4Network(base).prefixlen) for base, size in DEFAULT_POOLS)


def create_until_refused(vm: Machine, prefix: str, limit: int) -> tuple[int, str]:
    """Create up to `limit` networks; (how many were made, docker's refusal or '')."""
    script = f"for i in $(seq 1 {limit}); do docker network create {prefix}-$i >/dev/null || exit $((i - 1)); done"
    out = vm.execute(f"{script}; exit {limit}", timeout=1200)
    return out.rc, out.stderr.strip()


def network_subnets(vm: Machine, name: str) -> list[str]:
    template = "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
    return vm.succeed(f"docker network inspect -f '{template}' {name}").split()
