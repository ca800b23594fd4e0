"""ostree-rollback: upgrade an OSTree host to a new commit, then roll back, across real GRUB boots.

Recreates fedora-atomic-wiki.txt's upgrade/rollback cycle (`rpm-ostree upgrade`, reboot,
`rpm-ostree rollback`, reboot). Facts from ground-truth.md §9: bookworm has ostree 2022.7 but
no rpm-ostree and no `ostree admin set-default`, so where the image has no rpm-ostree the lab's
ostree-rollback tool (lab/guest/ostree_rollback.py) does what rpm-ostree's rollback does through
libostree: the previous deployment moves to the front, nothing is deleted, ostree rewrites GRUB's
menu. The upgrade is a commit made in the guest on top of the booted one (/usr/share/lab/version).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from lab.context import ScenarioContext
from lab.machine import GRUB_MENU
from lab.scenario import StandIn, by_stand_in, reproduced, scenario

VERSION_FILE = "/usr/share/lab/version"
BROKEN_UNIT = "lab-broken-upgrade.service"
BROKEN_SERVICE = """\
[Unit]
Description=A check that version 2 of the image fails (ostree-rollback break=upgrade)
DefaultDependencies=no
Before=sysinit.target
FailureAction=reboot-force

[Service]
Type=oneshot
ExecStart=/bin/false
"""
DEPLOYMENT = re.compile(r"^([* ]) (\S+) ([0-9a-f]{64})\.(\d+)(?: \((\w+)\))?$", re.MULTILINE)


@dataclass(frozen=True)
class Deployment:
    booted: bool
    osname: str
    checksum: str
    serial: int
    mark: str | None  # "pending", "rollback", "staged" or None

    @property
    def id(self) -> str:
        return f"{self.checksum}.{self.serial}"

    def rolled_back(self) -> Deployment:
        """This deployment listed below the booted one."""
        return replace(self, booted=False, mark="rollback")


def booted(deployment: Deployment) -> Deployment:
    return replace(deployment, booted=True, mark=None)


@scenario(
    "ostree-rollback",
    "Deploy a new OSTree commit, reboot into it through GRUB, roll back and reboot into the old one, /var and "
    "/etc carried over (break: none, upgrade = the new commit cannot boot: pick the old GRUB entry, roll back)",
    image="lab-ostree",
    memory=1024,
    params={"break": "none"},
    choices={"break": ("none", "upgrade")},
    tags=("ostree",),
    covers=(
        reproduced("ostree-status"),
        reproduced("etc-var-preserved"),
        by_stand_in("rollback", "rpm-ostree rollback, on images without rpm-ostree"),
    ),
    stand_ins=(StandIn("rpm-ostree rollback", "(lab/guest/ostree_rollback.py, on images without rpm-ostree) moves "
                       "the previous deployment to the front through libostree, as rpm-ostree's rollback does",
                       "run rpm-ostree's transaction, daemon or status output"),
               StandIn("lab-broken-upgrade.service", "(break=upgrade) fails version 2's boot and forces a reboot",
                       "show why a real upgrade breaks: the break is the lab's, the recovery is ostree's and GRUB's")),
    timeout=1800,
)
def ostree_rollback(lab: ScenarioContext) -> None:
    broken = lab.params["break"] == "upgrade"
    v1, ref = booted_image(lab)
    with lab.step("state in /var and a change in /etc"):
        lab.machine.succeed("head -c 4M /dev/urandom > /var/lib/lab-data && sha256sum /var/lib/lab-data"
                            " > /var/lib/lab-data.sha256")
        lab.machine.succeed("echo 'lab change' > /etc/lab.conf && echo '# lab' >> /etc/issue")
    v2 = deploy_version_2(lab, v1, ref, broken)
    if broken:
        boot_loop_then_previous_entry(lab, v1, v2)
    else:
        with lab.step("reboot: GRUB boots version 2, /var and /etc carried over"):
            lab.machine.reboot()
            assert status(lab, "3-upgraded") == [booted(v2), v1.rolled_back()]
            assert_booted(lab, v2, "2")
    roll_back(lab, v1, v2, broken)
    with lab.step("reboot: GRUB boots version 1 by default again, version 2 still deployed"):
        lab.machine.reboot()
        assert status(lab, "6-after-rollback") == [booted(v1), v2.rolled_back()]
        assert_booted(lab, v1, "1")


def booted_image(lab: ScenarioContext) -> tuple[Deployment, str]:
    vm = lab.machine
    with lab.step("GRUB booted the image's only deployment, version 1"):
        (v1,) = status(lab, "1-initial")
        assert v1.booted, v1
        assert_booted(lab, v1, "1")
        vm.fail("touch /usr/lab-probe", "Read-only file system")  # /usr, in a deployment
        return v1, re.findall(r"origin refspec: (\S+)", vm.succeed("ostree admin status"))[0]


def deploy_version_2(lab: ScenarioContext, v1: Deployment, ref: str, broken: bool) -> Deployment:
    vm, tree = lab.machine, "/var/tmp/v2"
    what = "a version 2 that cannot boot" if broken else "version 2"
    with lab.step(f"commit {what} on {ref} in the guest and deploy it"):
        vm.succeed(f"mkdir -p $(dirname {tree}{VERSION_FILE}) && echo 2 > {tree}{VERSION_FILE}")
        if broken:
            units = f"{tree}/usr/lib/systemd/system"
            vm.write_file(f"{units}/{BROKEN_UNIT}", BROKEN_SERVICE)
            vm.succeed(f"mkdir -p {units}/sysinit.target.wants && ln -s ../{BROKEN_UNIT} {units}/sysinit.target.wants/")
        checksum = vm.succeed(f"ostree commit --repo=/ostree/repo --branch={ref} --subject='lab-ostree 2' "
                              f"--add-metadata-string=version=2 --tree=ref={ref} --tree=dir={tree}").strip()
        lab.evidence("2-deploy.txt", vm.succeed(f"ostree admin deploy --os={v1.osname} {ref}", timeout=900))
        new, old = status(lab, "2-deployed")
        assert (new.checksum, new.booted, new.mark) == (checksum, False, "pending"), new
        assert old == v1, old
        assert first_grub_entry(lab) == new.id
        return new


def boot_loop_then_previous_entry(lab: ScenarioContext, v1: Deployment, v2: Deployment) -> None:
    vm = lab.machine
    failed = rf"Failed to start {re.escape(BROKEN_UNIT)}"
    with lab.step("reboot: version 2 fails and reboots, again and again (GRUB has no boot counting)"):
        start = vm.get_console_size()
        vm.start_reboot()
        vm.wait_for_console(failed, since=start)
        second = vm.get_console_size()
        vm.wait_for_console(failed, since=second)
        loop = vm.get_console_text(start)
        lab.evidence("3-boot-loop-console.txt", loop)
        assert GRUB_MENU in vm.get_console_text(second), "the second failure did not come from a new boot"
    with lab.step("pick version 1's entry in GRUB's menu: it boots, /var and /etc intact"):
        vm.boot_menu_entry(1)
        assert status(lab, "4-previous-entry") == [v2, booted(v1)]
        assert_booted(lab, v1, "1")


def roll_back(lab: ScenarioContext, v1: Deployment, v2: Deployment, broken: bool) -> None:
    vm = lab.machine
    with lab.step("roll back: version 1 first in the deployment list and GRUB's menu"):
        if lab.profile.rpm_ostree:
            out = vm.succeed("rpm-ostree rollback", timeout=900)
            assert f"Moving '{v1.id}' to be first deployment" in out, out  # rpm-ostree's own line
        else:  # the lab's tool: only its effects count (the deployment list, GRUB's menu)
            out = vm.succeed(lab.install_guest_tool("ostree_rollback"), timeout=900)
        lab.evidence("5-rollback.txt", out, stand_in="" if lab.profile.rpm_ostree else "rpm-ostree rollback")
        ids = [(d.id, d.booted) for d in status(lab, "5-rolled-back")]
        assert ids == [(v1.id, broken), (v2.id, not broken)], ids
        assert first_grub_entry(lab) == v1.id


def assert_booted(lab: ScenarioContext, deployment: Deployment, version: str) -> None:
    """The kernel was given `deployment` by GRUB, its /usr is that commit's, /var and /etc are kept."""
    vm = lab.machine
    assert booted_from(lab) == deployment.id
    assert vm.succeed(f"cat {VERSION_FILE}").strip() == version
    if vm.execute("test -e /var/lib/lab-data.sha256").rc == 0:
        vm.succeed("sha256sum -c /var/lib/lab-data.sha256")
        assert vm.succeed("cat /etc/lab.conf").strip() == "lab change"
        assert vm.succeed("tail -n 1 /etc/issue").strip() == "# lab"


def status(lab: ScenarioContext, name: str) -> list[Deployment]:
    """`ostree admin status` and GRUB's menu into the evidence; the deployments, in order."""
    vm = lab.machine
    text = vm.succeed("ostree admin status")
    lab.evidence(f"{name}/ostree-admin-status.txt", text)
    lab.evidence(f"{name}/grub.cfg", vm.succeed("cat /boot/grub/grub.cfg"))
    deployments = [Deployment(m[0] == "*", m[1], m[2], int(m[3]), m[4] or None) for m in DEPLOYMENT.findall(text)]
    if lab.profile.rpm_ostree:  # rpm-ostree must report the same list
        report = json.loads(vm.succeed("rpm-ostree status --json"))
        lab.evidence(f"{name}/rpm-ostree-status.json", json.dumps(report, indent=2))
        listed = [(d["checksum"], d["booted"]) for d in report["deployments"]]
        assert listed == [(d.checksum, d.booted) for d in deployments], listed
    return deployments


def booted_from(lab: ScenarioContext) -> str:
    """The deployment (checksum.serial) the kernel's `ostree=` argument points at."""
    cmdline = lab.machine.succeed("cat /proc/cmdline")
    path = re.search(r"\bostree=(\S+)", cmdline)
    assert path, f"no ostree= in {cmdline}"
    return lab.machine.succeed(f"readlink -f {path[1]}").strip().rsplit("/", 1)[1]


def first_grub_entry(lab: ScenarioContext) -> str:
    """The deployment GRUB's first (default) menu entry boots."""
    grub = lab.machine.succeed("cat /boot/grub/grub.cfg")
    path = re.search(r"^\s*linux(?:16)?\s.*\bostree=(\S+)", grub, re.MULTILINE)  # linux16: BIOS menus, as lab-ostree
    assert path, f"no ostree= entry in GRUB's menu:\n{grub}"
    return lab.machine.succeed(f"readlink -f {path[1]}").strip().rsplit("/", 1)[1]
