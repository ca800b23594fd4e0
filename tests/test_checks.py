import re

from lab.run.checks import scan

CONSOLE = """\
[    1.0] Linux version 6.1.0
[   12.3] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   12.4] Call Trace:
[   13.0] device-mapper: thin: 253:3: switching pool to out-of-data-space (error IO) mode
[   14.0] Out of memory: Killed process 123 (stress)
[  OK  ] Reached target multi-user.target
"""


def test_signs_of_a_sick_guest_are_found_one_per_line() -> None:
    bad, allowed = scan(CONSOLE, "console", ())
    assert [h.sign for h in bad] == ["kernel BUG", "kernel call trace", "OOM killer"]
    assert allowed == [] and all(h.source == "console" for h in bad)


def test_expected_lines_pass_narrowly() -> None:
    bad, allowed = scan(CONSOLE, "console", (re.compile(r"Out of memory: Killed process \d+ \(stress\)"),))
    assert [h.sign for h in allowed] == ["OOM killer"]
    assert [h.sign for h in bad] == ["kernel BUG", "kernel call trace"]


def test_a_healthy_log_has_no_hits() -> None:
    assert scan("[ OK ] Started ssh.service\nCloud-init v. 22.4.2 finished\n", "journal", ()) == ([], [])
