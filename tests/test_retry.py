import time

import pytest

from lab.base.errors import SshUnavailable, WaitTimeout
from lab.base.retry import wait_until


def test_returns_the_first_non_none_value() -> None:
    calls = []

    def predicate(last: bool) -> str | None:
        calls.append(last)
        return "ready" if len(calls) == 3 else None

    assert wait_until(predicate, what="x", timeout=5, interval=0.01) == "ready"
    assert len(calls) == 3


def test_timeout_names_what_and_the_last_transient_error() -> None:
    def predicate(last: bool) -> None:
        raise SshUnavailable("connection refused")

    start = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"waiting for SSH; last error: SshUnavailable: connection refused"):
        wait_until(predicate, what="SSH", timeout=0.3, interval=0.05)
    assert time.monotonic() - start < 2


def test_predicate_sees_its_last_try() -> None:
    seen = []

    def predicate(last: bool) -> None:
        seen.append(last)

    with pytest.raises(WaitTimeout):
        wait_until(predicate, what="x", timeout=0.3, interval=0.05)
    assert seen[-1] is True and not any(seen[:-2])


def test_other_errors_end_the_wait_at_once() -> None:
    calls = []

    def predicate(last: bool) -> None:
        calls.append(1)
        raise RuntimeError("guest is gone")

    with pytest.raises(RuntimeError):
        wait_until(predicate, what="x", timeout=5, interval=0.01)
    assert calls == [1]
