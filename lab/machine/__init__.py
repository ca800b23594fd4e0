"""A guest as scenarios drive it: `Machine` (lifecycle and verbs), its shell over SSH, the hypervisor's side of
one domain, and the private network between a run's guests. `from lab.machine import Machine` is the
scenario API."""

from lab.machine.lifecycle import GRUB_MENU, ROOT, Machine
from lab.machine.readiness import JOURNAL

__all__ = ["GRUB_MENU", "JOURNAL", "ROOT", "Machine"]
