"""The Machine is its lifecycle and a GuestShell beside it, not a GuestShell itself: one BootState, which
the lifecycle starts anew and either may find lost; the scenario verbs unchanged."""

from __future__ import annotations

import inspect

from lab.machine import Machine
from lab.machine.shell import BootState, GuestShell

VERBS = ("execute", "succeed", "fail", "wait_until_succeeds", "wait_for_unit", "get_unit_properties",
         "require_mount", "copy_to", "copy_tree_to", "write_file", "spawn", "wait_for_spawned", "mark_kernel_log",
         "get_kernel_log_since", "wait_for_console", "get_console_tail")


def test_the_machine_holds_a_shell_and_offers_its_verbs() -> None:
    assert not issubclass(Machine, GuestShell)
    for verb in VERBS:
        assert verb in vars(Machine), verb  # declared on the Machine, typed as the shell's own
        assert inspect.signature(getattr(GuestShell, verb)).parameters.keys() - {"self"}


def test_one_boot_state_with_one_way_to_begin_and_to_lose_a_boot() -> None:
    state = BootState()
    state.begin("b1")
    state.lose("the guest stopped")
    assert (state.boot_id, state.gone) == ("b1", "the guest stopped")
    state.begin()  # a power-on: commands may run again, the boot id comes with the next ready
    assert (state.boot_id, state.gone) == ("b1", "")
    assert "boot_id" not in vars(GuestShell) and "gone" not in inspect.getsource(GuestShell.__init__)
