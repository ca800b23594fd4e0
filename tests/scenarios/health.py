"""Scenarios for the lab's own tests: the health check must catch the kernel's own call trace, unless declared."""

from lab.context import ScenarioContext
from lab.scenario import ScenarioFailed, scenario

# SysRq-l: the kernel itself prints a backtrace of every CPU, "Call Trace:" lines included. The command
# line (which sudo logs) holds no such text, so only the kernel's own lines can be caught.
BACKTRACE = "echo 1 > /proc/sys/kernel/sysrq && echo l > /proc/sysrq-trigger"


@scenario("health-oops", "Makes the kernel print a call trace (SysRq-l) and expects nothing", memory=768)
def health_oops(lab: ScenarioContext) -> None:
    lab.machine.succeed(BACKTRACE)


@scenario("health-oops-expected", "Makes the kernel print a call trace (SysRq-l) the scenario declares expected",
          memory=768, expected=(r"Call Trace:",))
def health_oops_expected(lab: ScenarioContext) -> None:
    lab.machine.succeed(BACKTRACE)


@scenario("reboot-stub", "Masks reboot.target, then reboots: the boot-id check must notice nothing happened",
          memory=768)
def reboot_stub(lab: ScenarioContext) -> None:
    lab.machine.succeed("systemctl mask reboot.target")
    lab.machine.reboot(timeout=10)  # nothing happens: no need to wait longer


@scenario("ready-after-runcmd", "Its first command must find what cloud-init's slow runcmd made", memory=768)
def ready_after_runcmd(lab: ScenarioContext) -> None:
    lab.record("late", lab.machine.succeed("cat /run/lab-late").strip())


@scenario("poweroff-mid", "Powers the guest off under a long command: the run must end at once", memory=768)
def poweroff_mid(lab: ScenarioContext) -> None:
    lab.machine.succeed("systemctl poweroff --no-block; sleep 600", timeout=900)


@scenario("panic-mid", "Panics the guest's kernel under a long command: the run must end at once", memory=768)
def panic_mid(lab: ScenarioContext) -> None:
    lab.machine.succeed("echo 1 > /proc/sys/kernel/sysrq; (sleep 1; echo c > /proc/sysrq-trigger) & sleep 600",
                        timeout=900)


@scenario("reset-journal", "Logs a line, has journald write it to disk and presses reset: the boot's journal must "
          "be kept", memory=768)
def reset_journal(lab: ScenarioContext) -> None:
    lab.machine.succeed("logger -t lab-test 'the boot before the reset' && journalctl --flush --sync")
    lab.machine.reset()


@scenario("require-verbs", "The require_ checks pass on the guest's true state and fail the run on a false one",
          memory=768)
def require_verbs(lab: ScenarioContext) -> None:
    vm = lab.machine
    vm.require_mount("/run", "tmpfs", "tmpfs")
    vm.require_unit_state("ssh.service", "active")
    vm.require_absent("/etc/lab-nothing-here")
    vm.succeed("mkdir -p /run/lab-there")
    for check, call in (("mount", lambda: vm.require_mount("/run", "/dev/vda1", "xfs")),
                        ("unit", lambda: vm.require_unit_state("ssh.service", "inactive")),
                        ("absent", lambda: vm.require_absent("/run/lab-there"))):
        try:
            call()
        except ScenarioFailed as failed:
            lab.record(check, str(failed).splitlines()[0])
