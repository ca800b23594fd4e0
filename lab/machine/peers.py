"""The private network between a run's guests, when it has several.

Each guest gets a second NIC on a QEMU multicast socket bound to 127.0.0.1 (lab.virt.domain.PeerLink): the
guests' frames stay on the host's loopback, with no bridge and no route on the host. Inside, the lab
gives that NIC a fixed address on PEER_NET, raised again at every boot by a systemd unit, and each
guest's /etc/hosts every guest's name on it (its own too, in place of Debian's 127.0.1.1 line, as on a
host with a fixed address). A restored guest also takes its own host name (the saved one was booted
under another).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from lab.machine.shell import GuestShell
from lab.virt.domain import PEER_PCI_ADDR, PeerLink

PEER_NET = "10.77.0"  # /24 inside the guests only; the host never sees or routes it
FIRST_HOST = 11
UNIT = "lab-peer-net.service"
SCRIPT = "/usr/local/sbin/lab-peer-net"


@dataclass(frozen=True)
class PeerPlan:
    """A run's multicast group, and each machine's address and MAC on it, by host name."""

    group: str
    port: int
    hosts: tuple[str, ...]

    @classmethod
    def make(cls, run_id: str, hosts: list[str], port: int) -> PeerPlan:
        digest = hashlib.sha256(run_id.encode()).digest()
        return cls(f"230.{digest[0]}.{digest[1]}.{digest[2] or 1}", port, tuple(hosts))

    def address(self, host: str) -> str:
        return f"{PEER_NET}.{FIRST_HOST + self.hosts.index(host)}"

    def link(self, host: str) -> PeerLink:
        """The run's group; a MAC from the host names alone, the same in every run of a scenario: a guest
        restored from a checkpoint keeps the one it was given when the checkpoint was made. Runs at once
        are apart by group and port."""
        digest = hashlib.sha256(f"{','.join(self.hosts)}/{host}".encode()).digest()
        return PeerLink(self.group, self.port, "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3]))

    def hosts_lines(self) -> str:
        return "".join(f"{self.address(h)} {h}\n" for h in self.hosts)


def _script(plan: PeerPlan, host: str) -> str:
    """The guest's commands that raise its peer NIC (found by its PCI slot) with its MAC and address."""
    slot = f"/sys/bus/pci/devices/0000:00:{int(PEER_PCI_ADDR, 16):02x}.0"
    mac, address = plan.link(host).mac, plan.address(host)
    return (f"#!/bin/sh\nset -e\n"
            f"for i in $(seq 150); do ls {slot}/virtio*/net/ >/dev/null 2>&1 && break; sleep 0.2; done  # its driver\n"
            f"dev=$(ls {slot}/virtio*/net/)\n"
            f"ip link set dev \"$dev\" down\nip link set dev \"$dev\" address {mac}\n"
            f"sysctl -qw \"net.ipv6.conf.$dev.disable_ipv6=1\"\n"
            f"ip addr replace {address}/24 dev \"$dev\"\nip link set dev \"$dev\" up\n")


UNIT_TEXT = f"""[Unit]
Description=The lab's network between this run's guests
After=systemd-udev-trigger.service
Before=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={SCRIPT}

[Install]
WantedBy=multi-user.target
"""


def join(machine: GuestShell, plan: PeerPlan, host: str) -> None:
    """Give a ready guest its place on the run's network, now and at every later boot. One command, and no
    daemon-reload (seconds under TCG): the unit is only enabled for later boots, its script runs now."""
    net = PEER_NET.replace(".", "[.]")
    machine.succeed(
        f"printf %s {shlex.quote(_script(plan, host))} >{SCRIPT} && chmod 0755 {SCRIPT} && "
        f"printf %s {shlex.quote(UNIT_TEXT)} >/etc/systemd/system/{UNIT} && "
        f"hostname {host} && echo {host} >/etc/hostname && "
        f"sed -i '/^{net}[.]/d; /^127[.]0[.]1[.]1\\s/d' /etc/hosts && "
        f"printf %s {shlex.quote(plan.hosts_lines())} >>/etc/hosts && "
        f"{SCRIPT} && systemctl --no-reload enable {UNIT} 2>&1")
