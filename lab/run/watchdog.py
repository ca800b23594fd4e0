"""A scenario's time limit: past it the guests are destroyed, so no command hangs on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lab.base.errors import HarnessError, LabError
from lab.base.log import Log
from lab.machine import Machine


@contextmanager
def watchdog(machines: list[Machine], limit: float, log: Log) -> Iterator[None]:
    """Past the scenario's time limit the guests are destroyed, so no command hangs on."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        log.warning(f"scenario exceeded its limit of {limit:.0f} s; destroying "
                    f"{', '.join(m.spec.name for m in machines)}")
        for machine in machines:
            machine.destroy()

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except LabError as exc:
        if fired.is_set():
            raise HarnessError(f"scenario exceeded its time limit of {limit:.0f} s") from exc
        raise
    finally:
        timer.cancel()

