"""ostree-lastlog: /var/log/lastlog on an OSTree host, and sshd without it.

atomic-host-operator-blog.txt, the Ansible role: "Random Atomic Bugfixes | add lastlog" (`path:
/var/log/lastlog state: touch`). An OSTree commit carries no /var: a deployment's /var starts empty and
systemd-tmpfiles fills it at boot. Bookworm's systemd lists the file in its tmpfiles (var.conf), so it is
there at every boot; removed, as the field's hosts lacked it, sshd says so at each login, and the blog's
`touch` ends it. Logins are real ones (a pty through sshd, from the guest to itself).
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import reproduced, scenario

LASTLOG = "/var/log/lastlog"
MISSING = f"lastlog_openseek: Couldn't stat {LASTLOG}: No such file or directory"
BOOTED = "ostree admin status | sed -n 's/^\\* [^ ]* \\([0-9a-f]*\\)\\.[0-9]*$/\\1/p'"


@scenario(
    "ostree-lastlog",
    "an OSTree deployment's /var is made at boot: systemd-tmpfiles creates /var/log/lastlog; without it sshd "
    "complains at every login until the blog's touch (operator blog)",
    image="lab-ostree",
    memory=1024,
    tags=("ostree", "catalog"),
    covers=(reproduced("lastlog-missing", "bookworm's systemd-tmpfiles (var.conf) creates it at every boot, so "
                                          "the scenario removes it to show what the field's hosts did"),),
    timeout=600,
)
def ostree_lastlog(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("the booted commit has an empty /var; systemd-tmpfiles made /var/log/lastlog"):
        commit = vm.succeed(BOOTED).strip()
        listed = vm.succeed(f"ostree ls {commit} /var").split()
        assert listed[-1] == "/var" and len(listed) == 5, listed  # the directory alone, nothing under it
        assert f"f {LASTLOG} " in vm.succeed("cat /usr/lib/tmpfiles.d/var.conf")
        vm.succeed(f"test -f {LASTLOG}")
    with lab.step("without /var/log/lastlog a login works, and sshd says the file is missing"):
        vm.succeed(f"rm {LASTLOG} && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/lab-login && "
                   "cat /root/.ssh/lab-login.pub >> ~lab/.ssh/authorized_keys")
        said = _login(vm)
        lab.evidence("missing/sshd.txt", said)
        assert MISSING in said, said
        vm.require_absent(LASTLOG)
    with lab.step("the blog's fix, touch: the next login is recorded and sshd says nothing"):
        vm.succeed(f"touch {LASTLOG}")
        said = _login(vm)
        assert "lastlog" not in said, said
        recorded = vm.succeed("lastlog -u lab")
        lab.evidence("fixed/lastlog.txt", recorded)
        assert "Never logged in" not in recorded and "pts/" in recorded, recorded


def _login(vm: Machine) -> str:
    """A pty login as the lab user from the guest to itself; what sshd logged about it."""
    since = vm.succeed("date +%s.%N").strip()
    vm.succeed("ssh -tt -i /root/.ssh/lab-login -o StrictHostKeyChecking=no -o BatchMode=yes lab@localhost true")
    return vm.succeed(f"sleep 1; journalctl --since @{since} -t sshd -o cat --no-pager")
