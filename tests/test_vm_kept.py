"""A kept guest reached by the tools people bring: `lab ssh latest`, and `ssh -F` with the config
`lab ssh-config` prints, which accepts only the host key the lab pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
SCENARIOS = Path(__file__).parent / "scenarios"


def _lab(args: list[str], runs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_RUNS_DIR": str(runs), "LAB_SCENARIOS_DIR": str(SCENARIOS)}
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=900,
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
    finally:
        _lab(["destroy", run_id], tmp_path)
