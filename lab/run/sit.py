"""--sit: a failed run waits with its guest up, until Enter on a terminal or its time limit (under CI, or
without a terminal, only the limit). On a terminal, `py` and Enter opens a Python shell with the run's
machines and the Machine verbs at hand (as the NixOS test driver's interactive mode does); leaving it
(Ctrl-D) comes back to the wait."""

from __future__ import annotations

import code
import inspect
import os
import select
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from lab.base.errors import Interrupted
from lab.machine.shell import Verb

SHELL = "py"  # what to type, then Enter, for the Python shell


def wait_for_enter(timeout: float, shell: Callable[[], None] | None = None) -> str:
    """How the wait ended: 'enter', 'timeout' or 'interrupted' (Ctrl-C, SIGTERM)."""
    try:
        if not (sys.stdin.isatty() and not os.environ.get("CI")):
            time.sleep(timeout)
            return "timeout"
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([sys.stdin], [], [], left)
            if not ready:
                break
            if sys.stdin.readline().strip() != SHELL or shell is None:
                return "enter"
            shell()
            print(f"(back at the failed run: Enter tears it down, {SHELL} and Enter opens the shell again)")
        return "timeout"
    except (KeyboardInterrupt, Interrupted):
        return "interrupted"


def python_shell(machines: Mapping[str, Any]) -> Callable[[], None]:
    """A Python shell over the run's guests: `machine` (the first), `machines` (by name), and the first
    machine's verbs as plain functions (`succeed("lsblk")`, `reboot()`, `get_console_tail()`)."""

    def interact() -> None:
        first = next(iter(machines.values()))
        names = {"machine": first, "machines": dict(machines), **_verbs(first)}
        try:
            import readline
            import rlcompleter

            readline.set_completer(rlcompleter.Completer(names).complete)
            readline.parse_and_bind("tab: complete")
        except ImportError:  # no readline on this Python: a shell without completion
            pass
        code.interact(banner=f"machine = {first.name}; machines = {', '.join(machines)}; its verbs: "
                             f"{', '.join(sorted(_verbs(first)))}\n(Ctrl-D leaves the shell)",
                      local=names, exitmsg="")

    return interact


def _verbs(machine: Any) -> dict[str, Any]:
    """The machine's public methods and verbs, bound: what a scenario calls on `vm`."""
    return {name: getattr(machine, name) for cls in reversed(type(machine).__mro__)
            for name, attr in vars(cls).items()
            if not name.startswith("_") and (inspect.isfunction(attr) or isinstance(attr, Verb))}
