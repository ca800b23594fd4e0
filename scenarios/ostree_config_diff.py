"""ostree-config-diff: what `ostree admin config-diff` says about /etc on an OSTree host.

Recreates fedora-atomic-wiki.txt's `ostree admin config-diff` (M modified, A added, D deleted against
the deployment's default /etc in /usr/etc). The scenario changes
/etc in each of the three ways and asserts that ostree 2022.7 reports exactly those changes beside the
ones the host had already (cloud-init's users and hostname, systemd's machine-id).
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import reproduced, scenario

CHANGES = {  # path under /etc -> the letter ostree must give it
    "issue": "M",  # Debian's login banner, edited
    "lab-added.conf": "A",
    "issue.net": "D",
    "default/lab-net": "A",  # a file added in a directory the default /etc has (the wiki's sysconfig/...)
}


def _diff(vm: Machine) -> set[tuple[str, str]]:
    """(letter, path) of each line of `ostree admin config-diff`."""
    lines = vm.succeed("ostree admin config-diff").splitlines()
    return {(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines if line.strip()}


@scenario("ostree-config-diff", "ostree admin config-diff reports /etc's modified, added and deleted files (M/A/D)",
          image="lab-ostree", memory=1024, tags=("ostree", "catalog"), covers=(reproduced("ostree-config-diff"),),
          timeout=900)
def ostree_config_diff(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("what the host changed in /etc before the scenario"):
        before = _diff(vm)
        lab.evidence("config-diff-before.txt", vm.succeed("ostree admin config-diff"))
        assert ("M", "machine-id") in before, sorted(before)  # systemd made it at the first boot
        assert {("M", "passwd"), ("M", "group")} <= before, sorted(before)  # cloud-init's user
        lab.record("host_changes", len(before))
    with lab.step("modify, add and delete files in /etc"):
        vm.succeed("echo 'lab: edited' >> /etc/issue && echo 'x = 1' > /etc/lab-added.conf && rm /etc/issue.net"
                   " && echo 'LAB=1' > /etc/default/lab-net")
    with lab.step("config-diff reports each change with its letter, and nothing else new"):
        after = _diff(vm)
        lab.evidence("config-diff-after.txt", vm.succeed("ostree admin config-diff"))
        new = after - before
        assert new == {(letter, path) for path, letter in CHANGES.items()}, sorted(new)
        lab.record("changes", sorted(f"{letter} {path}" for letter, path in new))
