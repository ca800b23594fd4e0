"""What a failed run collects from its guest, so the failure can be read without the VM."""

from __future__ import annotations

from lab.base.artifacts import RunDir
from lab.base.errors import LabError
from lab.base.log import Log
from lab.machine import JOURNAL, Machine

# evidence file -> command; each is run on its own, so one that fails does not hide the others
FAILURE_EVIDENCE = {
    "journal.txt": JOURNAL,
    "dmesg.txt": "dmesg",
    "lsblk.txt": "lsblk -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINTS,SERIAL",
    "pvs.txt": "pvs",
    "vgs.txt": "vgs",
    "lvs.txt": "lvs -a -o +devices,data_percent,metadata_percent",
    "findmnt.txt": "findmnt",
    "failed-units.txt": "systemctl --failed --no-pager",
}


def collect_failure_evidence(machine: Machine, run_dir: RunDir, log: Log, prefix: str = "") -> list[str]:
    """Run FAILURE_EVIDENCE in the guest into evidence/failure/[prefix]; returns the files written. Never raises:
    a guest that is down or unreachable yields what it yields, and the log says so."""
    if not machine.is_running():
        log.info(f"{machine.name} is not running: no guest evidence to collect")
        return []
    written = []
    with log.nested(f"collecting failure evidence from {machine.name}"):
        for name, command in FAILURE_EVIDENCE.items():
            try:
                result = machine.execute(command, timeout=60)
            except LabError as exc:
                log.info(f"could not collect {name}: {exc}")
                break  # the guest is unreachable: later commands would fail the same way
            run_dir.write_evidence(f"failure/{prefix}{name}", result.stdout + result.stderr)
            written.append(f"failure/{prefix}{name}")
    return written
