"""cloud-init-once: cloud-init sets a host up at its first boot and nothing after, two ways.

atomic-host-operator-blog.txt, the Ansible role: "cloud-init is only used for the initial setup
(networking and root access)"; after it, "### Disable Cloud Init ###" stops, disables and masks
cloud-config, cloud-init, cloud-init-local and cloud-final. The lab's seed does the same from inside
cloud-init (its bootcmd writes /etc/cloud/cloud-init.disabled, cloudinit/user-data.yaml). Both are read
from the guest: cloud-init's log and journal, its generator's verdict in /run/cloud-init, systemd's unit
states.
"""

from __future__ import annotations

from lab.context import ScenarioContext
from lab.machine import Machine
from lab.scenario import reproduced, scenario

UNITS = ("cloud-config", "cloud-init", "cloud-init-local", "cloud-final")  # the blog's four, in its order
RAN = "running 'init'"  # cloud-init's network stage announcing itself in its unit's journal


@scenario(
    "cloud-init-once",
    "cloud-init runs at the first boot only: the seed's bootcmd disables it, or the operator blog masks its "
    "four units; each boot read from the guest (operator blog)",
    image="lab-bookworm",
    memory=768,
    tags=("catalog",),
    covers=(reproduced("cloud-init-masked", "the generator still reports cloud-init enabled when its units are "
                                            "masked; the file-based switch is what cloud-init itself reads"),),
    timeout=900,
)
def cloud_init_once(lab: ScenarioContext) -> None:
    vm = lab.machine
    with lab.step("first boot: cloud-init ran its init stage and, from its bootcmd, disabled later runs"):
        assert RAN in _this_boot(vm), "cloud-init's init stage did not run at the first boot"
        log = vm.succeed("grep -E \"Running module bootcmd|cloud-init.disabled\" /var/log/cloud-init.log")
        lab.evidence("first-boot/cloud-init.log.txt", log)
        assert "Running module bootcmd" in log, log
        vm.succeed("test -e /etc/cloud/cloud-init.disabled")
    with lab.step("reboot: the generator leaves cloud-init out of the boot"):
        vm.reboot()
        assert RAN not in _this_boot(vm)
        vm.succeed("test -e /run/cloud-init/disabled && ! test -e /run/cloud-init/enabled")
    with lab.step("enabled again, it runs at the next boot"):
        vm.run_cloud_init_at_every_boot()
        vm.reboot()
        assert RAN in _this_boot(vm)
    _masked(lab, vm)


def _masked(lab: ScenarioContext, vm: Machine) -> None:
    with lab.step("the blog's tasks: its four units stopped, disabled and masked; /etc/init/cloud-* removed"):
        for unit in UNITS:
            vm.succeed(f"systemctl stop {unit} && systemctl disable {unit} && systemctl mask {unit}")
        vm.succeed("rm -f /etc/init/cloud-*")
    with lab.step("reboot: cloud-init's generator still says enabled, but systemd runs none of its units"):
        vm.reboot()
        vm.succeed("test -e /run/cloud-init/enabled")
        states = {unit: vm.execute(f"systemctl is-enabled {unit}").stdout.strip() for unit in UNITS}
        lab.record("unit_states", states)
        assert set(states.values()) == {"masked"}, states
        assert RAN not in _this_boot(vm)
        assert vm.succeed("systemctl is-system-running || true").strip() == "running"
        lab.evidence("masked/status.txt", vm.execute("cloud-init status --long").stdout)


def _this_boot(vm: Machine) -> str:
    return vm.succeed("journalctl -b -u cloud-init.service -o cat --no-pager")
