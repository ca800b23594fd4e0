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
from lab.scenario import Setup, StandIn, by_stand_in, reproduced, scenario

VERSION_FILE = "/usr/share/lab/version"
REPO = "/ostree/repo"
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


def deploy_version_2(lab: ScenarioContext) -> None:
    """The setup its runs restore from a checkpoint: state in /var, a change in /etc (made before the
    deploy, which merges /etc), version 2 committed on the booted ref in the guest and deployed."""
    vm, tree = lab.machine, "/var/tmp/v2"
    broken = lab.params["break"] == "upgrade"
    with lab.step("state in /var and a change in /etc"):
        vm.succeed("head -c 4M /dev/urandom > /var/lib/lab-data && sha256sum /var/lib/lab-data"
                   " > /var/lib/lab-data.sha256")
        vm.succeed("echo 'lab change' > /etc/lab.conf && echo '# lab' >> /etc/issue")
    osname, ref = origin(lab)
    with lab.step(f"commit {'a version 2 that cannot boot' if broken else 'version 2'} on {ref} and deploy it"):
        vm.succeed(f"mkdir -p $(dirname {tree}{VERSION_FILE}) && echo 2 > {tree}{VERSION_FILE}")
        if broken:
            units = f"{tree}/usr/lib/systemd/system"
            vm.write_file(f"{units}/{BROKEN_UNIT}", BROKEN_SERVICE)
            vm.succeed(f"mkdir -p {units}/sysinit.target.wants && ln -s ../{BROKEN_UNIT} {units}/sysinit.target.wants/")
        vm.succeed(f"ostree commit --repo={REPO} --branch={ref} --subject='lab-ostree 2' "
                   f"--add-metadata-string=version=2 --tree=ref={ref} --tree=dir={tree}")
        vm.succeed(f"ostree admin deploy --os={osname} {ref}", timeout=900)


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
    setup=Setup("ostree-version-2-deployed", deploy_version_2, reads=("break",)),
)
def ostree_rollback(lab: ScenarioContext) -> None:
    broken = lab.params["break"] == "upgrade"
    v1, v2 = deployed_next_to_version_1(lab, broken)
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


def deployed_next_to_version_1(lab: ScenarioContext, broken: bool) -> tuple[Deployment, Deployment]:
    """Version 1 booted; version 2, the ref's head and a child of version 1, pending and GRUB's default."""
    vm = lab.machine
    what = "a version 2 that cannot boot" if broken else "version 2"
    with lab.step(f"GRUB booted version 1; {what}, committed on its ref, is deployed next to it"):
        deployments = status(lab, "1-deployed")
        assert len(deployments) == 2, f"ostree admin status lists {len(deployments)} deployment(s), not 2"
        v2, v1 = deployments
        assert (v1.booted, v1.mark) == (True, None), v1  # ostree's mark: the kernel's ostree= names a boot
        assert_holds(lab, "1")  # version (/ostree/boot.N) the deploy has since replaced
        vm.fail("touch /usr/lab-probe", "Read-only file system")  # /usr, in a deployment
        _, ref = origin(lab)
        assert (v2.checksum, v2.booted, v2.mark) == (rev_parse(lab, ref), False, "pending"), v2
        assert rev_parse(lab, f"{ref}^") == v1.checksum
        version = vm.succeed(f"ostree show --repo={REPO} --print-metadata-key=version {ref}").strip()
        assert version == "'2'", version
        units = vm.succeed(f"ostree ls --repo={REPO} {ref} /usr/lib/systemd/system")
        assert (BROKEN_UNIT in units) == broken, units
        assert first_grub_entry(lab) == v2.id
        return v1, v2


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
    """The kernel was given `deployment` by GRUB, and it holds what it should (`assert_holds`)."""
    assert booted_from(lab) == deployment.id
    assert_holds(lab, version)


def assert_holds(lab: ScenarioContext, version: str) -> None:
    """/usr is version `version`'s; /var and /etc keep what the setup wrote."""
    vm = lab.machine
    assert vm.succeed(f"cat {VERSION_FILE}").strip() == version
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


def origin(lab: ScenarioContext) -> tuple[str, str]:
    """The booted deployment's osname and origin ref, as `ostree admin status` names them."""
    text = lab.machine.succeed("ostree admin status")
    osname = re.search(r"^\* (\S+) ", text, re.MULTILINE)
    ref = re.search(r"origin refspec: (\S+)", text)
    assert osname and ref, text
    return osname[1], ref[1]


def rev_parse(lab: ScenarioContext, rev: str) -> str:
    return lab.machine.succeed(f"ostree rev-parse --repo={REPO} {rev}").strip()


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
