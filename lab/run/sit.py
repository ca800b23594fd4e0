"""--sit: a failed run waits with its guest up, until Enter on a terminal or its time limit (under CI, or
without a terminal, only the limit)."""

from __future__ import annotations

import os
import select
import sys
import time

from lab.base.errors import Interrupted


def wait_for_enter(timeout: float) -> str:
    """How the wait ended: 'enter', 'timeout' or 'interrupted' (Ctrl-C, SIGTERM)."""
    try:
        if sys.stdin.isatty() and not os.environ.get("CI"):
            ready, _, _ = select.select([sys.stdin], [], [], timeout)
            if ready:
                sys.stdin.readline()
                return "enter"
            return "timeout"
        time.sleep(timeout)
        return "timeout"
    except (KeyboardInterrupt, Interrupted):
        return "interrupted"
