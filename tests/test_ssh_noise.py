"""Polling a guest whose sshd is not up yet is expected: paramiko's handshake errors go to the run's
transcript, never into a pytest report (which once carried ~700 lines of them)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from lab import ssh
from lab.errors import SshUnavailable, WaitTimeout
from lab.retry import wait_until

FAILING = """
import socket, threading
from pathlib import Path
from lab import ssh
from lab.retry import wait_until

def test_polls_a_guest_that_never_answers(tmp_path):
    server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(8)
    threading.Thread(target=lambda: [server.accept()[0].close() for _ in range(100)], daemon=True).start()
    session = ssh.SshSession("127.0.0.1", server.getsockname()[1], "lab",
                             ssh.KeyPair.generate(tmp_path / "key", "t"), scale=0.1)
    wait_until(lambda last: session.connect(), what="SSH", timeout=3, interval=0.2)
"""


def test_a_failed_ssh_wait_reports_no_paramiko_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_poll=FAILING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    report = result.stdout.str()
    assert "waiting for SSH; last error: SshUnavailable" in report
    assert "paramiko." not in report and "transport.py" not in report, report
    assert len(report.splitlines()) < 80, report


def test_paramiko_errors_reach_the_transcript(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    threading.Thread(target=lambda: [server.accept()[0].close() for _ in range(20)], daemon=True).start()
    lines: list[str] = []
    session = ssh.SshSession("127.0.0.1", server.getsockname()[1], "lab", ssh.KeyPair.generate(tmp_path / "k", "t"),
                             scale=0.1, sink=lines.append)
    with pytest.raises(WaitTimeout):
        wait_until(lambda last: session.connect(), what="SSH", timeout=1, interval=0.2,
                   transient=(SshUnavailable,))
    assert any(line.startswith("paramiko error: ") and "banner" in line for line in lines), lines
