"""--sit on a terminal: `py` and Enter opens a Python shell with `machine`, `machines` and the machine's verbs
bound; Ctrl-D comes back to the wait, Enter tears down. Through a pty, with a stand-in machine (the VM
test, test_vm_kept.py, does the same on a real guest)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

SITTER = """
from lab.run.sit import python_shell, wait_for_enter


class Guest:
    name = "vm1"

    def succeed(self, command):
        return "ran " + command


print("sat until", wait_for_enter(60, python_shell({"vm1": Guest()})), flush=True)
"""


def test_py_opens_a_shell_with_the_machine_and_enter_ends_the_wait() -> None:
    main, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    sitter = subprocess.Popen([sys.executable, "-c", SITTER], stdin=terminal, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for typed in (b"py\n", b"print(succeed('uname -r'))\n", b"print(machine.name, sorted(machines))\n",
                      b"\x04", b"\n"):
            time.sleep(0.5)
            os.write(main, typed)
        output, _ = sitter.communicate(timeout=60)
    finally:
        sitter.kill()
        os.close(main)
        os.close(terminal)
    assert "machine = vm1; machines = vm1; its verbs: succeed" in output, output
    assert "ran uname -r" in output and "vm1 ['vm1']" in output
    assert "(back at the failed run" in output and output.rstrip().endswith("sat until enter")
