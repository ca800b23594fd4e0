"""A remote libvirt host, reached with qemu+ssh://: a local sshd on 127.0.0.1 plays the remote host
(scripts/loopback-remote.sh), so the run goes through every remote code path: libvirt over SSH, the
console read through a libvirt stream, the guest's SSH reached through the host (direct-tcpip)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.base.config import REPO_ROOT, Config
from lab.virt.cleanup import inventory
from lab.virt.hypervisor import connect
from lab.virt.storage import Pool

pytestmark = [pytest.mark.vm, pytest.mark.nightly]


@pytest.fixture
def remote_uri() -> Iterator[str]:
    script = str(REPO_ROOT / "scripts" / "loopback-remote.sh")
    home = Config.from_env().state_dir / "loopback-remote-test"  # stable: the host's KVM probe verdict is kept
    proc = subprocess.run([script, str(home)], capture_output=True, text=True, check=False,
                          env={**os.environ, "LOOPBACK_SSH_PORT": "2223"})
    assert proc.returncode == 0, proc.stderr
    try:
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([script, "stop", str(home)], check=False)


def _run_smoke(env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "lab.doors.cli", "run", "smoke"], capture_output=True, text=True,
                          timeout=1800, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads((Path(env["LAB_RUNS_DIR"]) / "latest" / "result.json").read_text())
    return result


def test_smoke_on_a_remote_libvirt_host_starts_warm(remote_uri: str, tmp_path: Path) -> None:
    """Two runs: the first saves a guest on the remote host if none is saved there yet, the second restores it."""
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path / "runs"), "LAB_LIBVIRT_URI": remote_uri}
    first = _run_smoke(env)
    assert first["start"] in ("warm", "warm (guest saved by this run)"), first["start"]
    result = _run_smoke(env)
    assert result["start"] == "warm", result["start"]
    assert [s["status"] for s in result["steps"]] == ["passed"] * 6
    console = (Path(result["artifacts"]) / "console.log").read_text(errors="replace")
    assert "Linux version" in console, "the console stream of the restored guest lost its reboot"
    config = Config.from_env()
    pool = Pool(connect(remote_uri), config.pool_name, config.pool_dir)
    saves = [name for name in pool.names() if name.endswith("-memory.save")]
    assert saves, "the remote host keeps no saved guest's memory in the lab's pool"
    for run in (first, result):
        assert run["run_id"] not in inventory(pool.conn, pool), "the run left domains or volumes behind"
