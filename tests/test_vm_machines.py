"""A run with two guests (`machines=`): their own network, by name, with nothing on the host but loopback
traffic; a disk moved from one to the other; a disk both see at once."""

from __future__ import annotations

import subprocess

import pytest

from lab.context import ScenarioContext
from lab.machine.peers import PEER_NET
from lab.scenario import Disk, Node

pytestmark = pytest.mark.vm
FETCH = "python3 -c \"import urllib.request as u; print(u.urlopen('http://host1:8080/hostname').read().decode())\""


@pytest.mark.lab(memory=768, machines={"host1": Node(disks=(Disk("256M", "moved"),)), "host2": Node()},
                 shared_disks=[Disk("64M", "shared")])
def test_two_guests_talk_by_name_and_move_and_share_disks(lab: ScenarioContext) -> None:
    one, two = lab.machines["host1"], lab.machines["host2"]
    assert [one.succeed("hostname").strip(), two.succeed("hostname").strip()] == ["host1", "host2"]
    assert [vm.address_of("host1") for vm in (one, two)] == [f"{PEER_NET}.11"] * 2
    assert f"{PEER_NET}." not in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert f"{PEER_NET}." not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout

    one.spawn("python3 -m http.server 8080 --directory /etc", name="http")
    two.wait_for_open_port(8080, host="host1")
    assert two.succeed(FETCH).strip() == "host1"  # host1's own /etc/hostname, served over the guests' network
    assert f"{PEER_NET}.11 " in two.succeed("ip neigh show dev $(ls /sys/bus/pci/devices/0000:00:11.0/virtio*/net/)")

    token = one.succeed("cat /proc/sys/kernel/random/uuid | tee /root/token")  # restored twins share machine-id
    lab.copy_between(one, "/root/token", two, "/tmp/token-of-host1")
    assert two.succeed("cat /tmp/token-of-host1") == token

    one.succeed("echo written-by-host1 | dd of=/dev/disk/by-id/virtio-shared bs=4096 conv=sync oflag=direct")
    seen = two.succeed("dd if=/dev/disk/by-id/virtio-shared bs=4096 count=1 iflag=direct 2>/dev/null | head -n 1")
    assert seen.strip() == "written-by-host1"  # the same blocks, no cache between

    one.succeed("mkfs.ext4 -q -L moved /dev/disk/by-id/virtio-moved && mkdir -p /mnt/moved && "
                "mount /dev/disk/by-id/virtio-moved /mnt/moved && cp /root/token /mnt/moved/origin && "
                "umount /mnt/moved")
    lab.move_disk("moved", one, two)
    one.wait_until_succeeds("! test -e /dev/disk/by-id/virtio-moved")
    two.succeed("mkdir -p /mnt/moved && mount /dev/disk/by-id/virtio-moved /mnt/moved")
    assert two.succeed("cat /mnt/moved/origin") == token


IDENTITY = ("cat /etc/machine-id /proc/sys/kernel/random/boot_id && ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
            " && ls /var/log/journal")


@pytest.mark.lab(memory=768, machines={"host1": Node(), "host2": Node()})
def test_two_guests_of_a_run_differ_as_two_hosts(lab: ScenarioContext) -> None:
    """Machine-id, boot id, SSH host key and the journal's directory: each its own, on a warm start too
    (guests restored from one saved guest shared them all)."""
    one, two = (lab.machines[name].succeed(IDENTITY).splitlines() for name in ("host1", "host2"))
    assert len(one) == len(two) == 4
    for mine, theirs in zip(one, two, strict=True):
        assert mine != theirs, f"host1 and host2 share {mine!r}"
