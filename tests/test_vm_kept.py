"""A kept guest reached by the tools people bring: `lab ssh latest`, `ssh -F` with the config
`lab ssh-config` prints, which accepts only the host key the lab pinned, and its serial console typed into
(`lab console -i`, through a pty); a failed run that sits (--sit)
until Enter, reachable the same way meanwhile, with a Python shell on its guest."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
SCENARIOS = Path(__file__).parent / "scenarios"


def _lab(args: list[str], runs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_RUNS_DIR": str(runs), "LAB_SCENARIOS_DIR": str(SCENARIOS)}
    return subprocess.run([sys.executable, "-m", "lab.doors.cli", *args], capture_output=True, text=True, timeout=900,
                          env=env, check=False)


def test_ssh_config_pins_the_host_key(tmp_path: Path) -> None:
    assert _lab(["run", "require-verbs", "--keep"], tmp_path).returncode == 0
    run_id = json.loads((tmp_path / "latest" / "result.json").read_text())["run_id"]
    try:
        assert _lab(["ssh", "latest", "hostname"], tmp_path).stdout.strip() == "vm1"
        config = tmp_path / "ssh_config"
        config.write_text(_lab(["ssh-config", "latest"], tmp_path).stdout)
        assert "StrictHostKeyChecking yes" in config.read_text()
        ssh = ["ssh", "-F", str(config), "-o", "BatchMode=yes", f"lab-{run_id}", "hostname"]
        assert subprocess.run(ssh, capture_output=True, text=True, timeout=120, check=False).stdout.strip() == "vm1"
        known = tmp_path / "latest" / "known_hosts"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
        other = (tmp_path / "other.pub").read_text().split()[:2]
        known.write_text(f"lab-{run_id} {' '.join(other)}\n")  # another key than the guest's
        refused = subprocess.run(ssh, capture_output=True, text=True, timeout=120, check=False)
        assert refused.returncode != 0 and "Host key verification failed" in refused.stderr, refused.stderr
        shown = _typed_into_console(tmp_path, [b"\r", b"root\r"])
        assert "vm1 login: root" in shown and "Password:" in shown, shown  # the guest's getty on ttyS0 answered
        assert "(left lab-run-" in shown
        assert "vm1 login: root" in (tmp_path / "latest" / "console.log").read_text()  # and the capture has it
    finally:
        _lab(["destroy", run_id], tmp_path)


def _typed_into_console(runs: Path, keys: list[bytes]) -> str:
    """`lab console latest -i` in a terminal (a pty): type `keys`, then Ctrl-] to leave; what it showed."""
    main, terminal = pty.openpty()
    env = {**os.environ, "LAB_RUNS_DIR": str(runs), "LAB_SCENARIOS_DIR": str(SCENARIOS)}
    console = subprocess.Popen([sys.executable, "-m", "lab.doors.cli", "console", "latest", "-i"], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=env)
    shown = b""
    try:
        for key in [b"", *keys, b"\x1d"]:
            os.write(main, key)
            deadline = time.monotonic() + 3
            while (left := deadline - time.monotonic()) > 0:
                if select.select([main], [], [], left)[0]:
                    shown += os.read(main, 4096)
        assert console.wait(timeout=30) == 0
    finally:
        console.kill()
        os.close(main)
        os.close(terminal)
    return shown.decode(errors="replace")


def test_a_failed_run_sits_until_enter(tmp_path: Path) -> None:
    main, terminal = pty.openpty()  # the run's stdin is a terminal: it waits for Enter
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"LAB_RUNS_DIR": str(tmp_path),
                                                                "LAB_SCENARIOS_DIR": str(SCENARIOS)}
    run = subprocess.Popen([sys.executable, "-m", "lab.doors.cli", "run", "health-oops", "--sit"], stdin=terminal,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        result = tmp_path / "latest" / "result.json"
        deadline = time.monotonic() + 900
        while not (result.exists() and json.loads(result.read_text()).get("kept")):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended without sitting"
            time.sleep(2)
        assert json.loads(result.read_text())["status"] == "failed"
        assert _lab(["ssh", "latest", "hostname"], tmp_path).stdout.strip() == "vm1"
        config = tmp_path / "ssh_config"
        config.write_text(_lab(["ssh-config", "latest"], tmp_path).stdout)
        alias = config.read_text().split()[1]
        copied = tmp_path / "os-release"
        scp = ["scp", "-F", str(config), "-o", "BatchMode=yes", f"{alias}:/etc/os-release", str(copied)]
        assert subprocess.run(scp, capture_output=True, timeout=120, check=False).returncode == 0
        assert "bookworm" in copied.read_text()
        for typed in (b"py\n", b"print('hostname:', succeed('hostname').strip(), sorted(machines))\n", b"\x04",
                      b"\n"):  # a Python shell on the guest, then Enter
            os.write(main, typed)
            time.sleep(1)
        output, _ = run.communicate(timeout=300)
    finally:
        run.kill()
        os.close(main)
        os.close(terminal)
    assert run.returncode == 1, output
    assert "sitting on the failed run" in output and "sat until enter" in output, output
    assert "hostname: vm1 ['vm1']" in output, output
    final = json.loads(result.read_text())
    assert not final["kept"] and final["status"] == "failed"
    listed = json.loads(_lab(["cleanup", "--list", "--json"], tmp_path).stdout)
    assert final["run_id"] not in json.dumps(listed)  # torn down after the sit
