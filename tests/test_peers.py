"""The plan of the network between a run's guests: one group per run, an address and a MAC per guest."""

from __future__ import annotations

from lab.machine.peers import PEER_NET, PeerPlan, _script


def test_each_guest_has_its_own_address_and_mac_on_the_runs_group() -> None:
    plan = PeerPlan.make("ab12cd34", ["host1", "host2", "db"], 45000)
    other = PeerPlan.make("ffff0000", ["host1", "host2", "db"], 45000)
    assert plan.group.startswith("230.") and plan.group != other.group
    assert [plan.address(h) for h in plan.hosts] == [f"{PEER_NET}.11", f"{PEER_NET}.12", f"{PEER_NET}.13"]
    macs = {plan.link(h).mac for h in plan.hosts}
    assert len(macs) == 3 and all(mac.startswith("52:54:00:") for mac in macs)
    assert plan.link("db").mac == other.link("db").mac  # a checkpoint's guests keep theirs in a later run
    assert plan.link("db").mac != PeerPlan.make("ab12cd34", ["host1", "db"], 45000).link("db").mac
    assert plan.hosts_lines() == f"{PEER_NET}.11 host1\n{PEER_NET}.12 host2\n{PEER_NET}.13 db\n"


def test_the_guest_finds_the_nic_by_its_pci_slot_and_sets_its_mac_and_address() -> None:
    plan = PeerPlan.make("ab12cd34", ["host1", "host2"], 45000)
    script = _script(plan, "host2")
    assert "/sys/bus/pci/devices/0000:00:11.0/virtio*/net/" in script
    assert f"address {plan.link('host2').mac}" in script
    assert f"ip addr replace {PEER_NET}.12/24" in script
