"""The one polling helper: wait until a predicate holds, or explain why not."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from lab.base.errors import SshUnavailable, WaitTimeout

T = TypeVar("T")


def wait_until(predicate: Callable[[bool], T | None], *, what: str, timeout: float,
               interval: float = 1.0, transient: tuple[type[Exception], ...] = (SshUnavailable, OSError),
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `predicate(last_try)` until it returns something other than None.

    The predicate gets `last_try=True` on its final call, so it can say what it
    saw; a `WaitTimeout` carries that and the elapsed time. Exceptions of the
    `transient` types mean "not yet" (the last one is reported on timeout);
    any other ends the wait at once.
    """
    start = time.monotonic()
    seen: list[str] = []

    def attempt() -> T | None:
        last = time.monotonic() - start + interval >= timeout
        try:
            return predicate(last)
        except transient as exc:
            seen[:] = [f"{type(exc).__name__}: {exc}"]
            return None

    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=interval / 4, min=interval / 4, max=interval),
        retry=retry_if_result(lambda r: r is None),
        sleep=sleep,
        reraise=True,
    )
    try:
        result = retrying(attempt)
    except RetryError:
        result = None
    if result is None:
        last_error = f"; last error: {seen[0]}" if seen else ""
        raise WaitTimeout(f"timed out after {time.monotonic() - start:.1f} s (limit {timeout:.0f} s) "
                          f"waiting for {what}{last_error}")
    return result
