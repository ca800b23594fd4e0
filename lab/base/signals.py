"""SIGTERM ends a run like Ctrl-C does: through its cleanup path."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

from lab.base.errors import Interrupted


def trap_signals() -> Callable[[], object]:
    """Turn SIGTERM into `Interrupted` until the returned function restores the previous handler."""

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


def ignore_sigterm() -> None:
    """From here on (cleanup), a second signal must not cut the work short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
