"""Polling a guest whose sshd is not up yet is expected: paramiko's handshake errors go to the run's
transcript, never into a pytest report (which once carried ~700 lines of them)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lab.base.log import Log, configure_terminal
from lab.machine import ssh

FAILING = """
import socket, threading
from lab.machine import ssh
from lab.base.retry import wait_until

def test_polls_a_guest_that_never_answers(tmp_path):
    server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(8)
    threading.Thread(target=lambda: [server.accept()[0].close() for _ in range(100)], daemon=True).start()
    session = ssh.SshSession("127.0.0.1", server.getsockname()[1], "lab",
                             ssh.KeyPair.generate(tmp_path / "key", "t"), scale=0.1)
    wait_until(lambda last: session.connect(), what="SSH", timeout=3, interval=0.2)
"""


FIXTURE_LOG = """
import logging
import pytest
from lab.machine import ssh
from lab.base.log import Log

@pytest.fixture
def log(tmp_path):  # made before the test's call phase, as the lab fixture's run log is
    log = Log(terminal=False)
    log.open_transcript(tmp_path / "transcript.log")
    yield log
    log.close()

def test_a_run_that_polls_and_fails(log, tmp_path):
    session = ssh.SshSession("127.0.0.1", 1, "lab", ssh.KeyPair.generate(tmp_path / "k", "t"),
                             log_channel=log.child("paramiko.vm1"))
    logging.getLogger(session.log_channel).error("Exception (client): Error reading SSH " + "protocol banner")
    log.info("a step " + "of the run")  # the report shows the source: only a record has these words joined
    assert (tmp_path / "transcript.log").read_text().count("\\n") == 2
    assert 0, "the test's own failure"
"""


def _report_of_a_failing(pytester: pytest.Pytester, source: str) -> str:
    """pytest's report of a test file whose one test fails."""
    pytester.makepyfile(test_failing=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    return result.stdout.str()


def test_a_runs_records_stay_out_of_the_report(pytester: pytest.Pytester) -> None:
    """pytest 9 reports the records of non-propagating loggers too: the plugin keeps the lab's out."""
    report = _report_of_a_failing(pytester, FIXTURE_LOG)
    assert "the test's own failure" in report
    assert "a step of the run" not in report and "SSH protocol banner" not in report, report
    assert "Captured log" not in report, report


def test_a_failed_ssh_wait_reports_no_paramiko_traceback(pytester: pytest.Pytester) -> None:
    report = _report_of_a_failing(pytester, FAILING)
    assert "waiting for SSH; last error: SshUnavailable" in report
    assert "paramiko." not in report and "transport.py" not in report, report
    assert len(report.splitlines()) < 80, report


def test_paramiko_records_reach_the_transcript_and_no_handler(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    log = Log(terminal=False)
    log.open_transcript(tmp_path / "transcript.log")
    session = ssh.SshSession("127.0.0.1", 22, "lab", ssh.KeyPair.generate(tmp_path / "k", "t"),
                             log_channel=log.child("paramiko.vm1"))
    logging.getLogger(session.log_channel).error("Exception (client): Error reading SSH protocol banner")
    logging.getLogger(session.log_channel).debug("kex algos: chatter")  # below paramiko's WARNING level
    log.close()
    lines = (tmp_path / "transcript.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "paramiko error: Exception (client): Error reading SSH protocol banner"]
    assert not caplog.records


def test_verbosity_chooses_what_reaches_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    for verbosity, shown in ((-1, ["PASSED x"]), (0, ["step", "PASSED x"]), (1, ["step", "$ true", "PASSED x"])):
        configure_terminal(verbosity)
        log = Log()
        log.info("step")
        log.transcript("$ true")
        log.result("PASSED x")
        assert capsys.readouterr().err.splitlines() == shown
    configure_terminal()


def test_a_connection_without_a_banner_is_given_up_soon(tmp_path: Path) -> None:
    """QEMU's port forward accepts while the guest cannot answer; such a poll ends after the banner probe,
    not after the whole handshake's limits (which made reboots look ~20 s longer than they were)."""
    import socket
    import time

    from lab.base.errors import SshUnavailable

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts (the kernel does), never answers
    session = ssh.SshSession("127.0.0.1", server.getsockname()[1], "lab", ssh.KeyPair.generate(tmp_path / "k", "t"),
                             scale=0.25)
    start = time.monotonic()
    with pytest.raises(SshUnavailable, match="no SSH banner within 1 s"):
        session.connect()
    assert time.monotonic() - start < ssh.CONNECT_TIMEOUT * 0.25
    server.close()


def test_once_sshd_listens_a_late_banner_is_waited_for(tmp_path: Path) -> None:
    """A loaded guest's sshd sent its banner later than the probe: each probe given up cost it one more sshd
    start. Once the console shows sshd started, connect(patient=True) waits for the banner."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def late_banner() -> None:
        conn = server.accept()[0]
        time.sleep(2.0)  # later than the probe (4 s x 0.25), sooner than the banner limit (20 s x 0.25)
        conn.sendall(b"SSH-2.0-late\r\n")
        time.sleep(1.0)
        conn.close()

    threading.Thread(target=late_banner, daemon=True).start()
    session = ssh.SshSession("127.0.0.1", server.getsockname()[1], "lab", ssh.KeyPair.generate(tmp_path / "k", "t"),
                             scale=0.25)
    from lab.base.errors import SshUnavailable

    with pytest.raises(SshUnavailable) as failed:
        session.connect(patient=True)
    assert "no SSH banner" not in str(failed.value)  # the banner came; the fake server then hung up
    server.close()
