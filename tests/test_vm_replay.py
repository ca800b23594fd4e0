"""lab replay on a real sos report: a lab-atomic guest with a known layout writes one with bookworm's
`sos report`, and a fresh guest replays it within the tolerances, item by item (nightly); make test
replays the report such a run wrote (tests/data/sosreport-lab-atomic) from a user's pytest file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
LAB = [sys.executable, "-m", "lab.doors.cli"]
HERE = Path(__file__).parent


def _lab(args: list[str], runs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_RUNS_DIR": str(runs), "LAB_SCENARIOS_DIR": str(HERE / "scenarios")}
    return subprocess.run([*LAB, *args], capture_output=True, text=True, timeout=3600, env=env, check=False)


@pytest.mark.nightly  # two lab-atomic guests and bookworm's sos under TCG (~6 min); make test replays the
def test_a_hosts_sos_report_replays_into_a_fresh_guest(tmp_path: Path) -> None:  # report this made once
    source = _lab(["run", "sos-source"], tmp_path / "source")
    assert source.returncode == 0, source.stderr[-3000:]
    archive = next((tmp_path / "source" / "latest" / "evidence").glob("sosreport.tar.*"))

    replay = _lab(["replay", str(archive)], tmp_path / "replay")
    assert replay.returncode == 0, replay.stderr[-3000:]
    result = json.loads((tmp_path / "replay" / "latest" / "result.json").read_text())
    figures = result["facts"]["replay"]
    assert figures["items"] >= 15 and figures["matched"] == figures["items"], figures
    table = (tmp_path / "replay" / "latest" / "evidence" / "replay.md").read_text()
    assert "| atomicos/docker-pool | data% |" in table and "| /srv/old | mount |" in table


REPRODUCTION = """
import socket

import pytest


@pytest.mark.lab(host={archive!r})
def test_the_pool_is_there_and_the_host_out_of_reach(machine):
    assert machine.succeed("lvs --noheadings -o lv_attr atomicos/docker-pool").strip().startswith("twi")
    # a replay guest runs names from someone else's report as root: it must not reach this host's loopback
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(1)
        port = server.getsockname()[1]
        said = machine.fail(f"timeout 15 bash -c 'echo hello >/dev/tcp/10.0.2.2/{{port}}'", "Connection refused")
        with pytest.raises(TimeoutError):
            server.accept()
    print("host loopback from the guest:", said.strip() or "refused")
"""


def test_a_pytest_reproduction_runs_on_the_replayed_host(tmp_path: Path) -> None:
    archive = HERE / "data" / "sosreport-lab-atomic"
    (tmp_path / "test_repro.py").write_text(REPRODUCTION.format(archive=str(archive)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False,
                          env={**os.environ, "LAB_RUNS_DIR": str(tmp_path / "runs")})
    assert proc.returncode == 0, proc.stdout[-3000:]
    run = next(path.parent for path in (tmp_path / "runs").glob("*/result.json"))
    figures = json.loads((run / "result.json").read_text())["facts"]["replay"]
    assert figures["items"] >= 15 and figures["matched"] == figures["items"], figures
    table = (run / "evidence" / "replay.md").read_text()
    assert "| atomicos/docker-pool | data% |" in table and "| /srv/old | mount |" in table
