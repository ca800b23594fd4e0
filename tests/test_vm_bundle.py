"""A run bundled in one clone reruns from another (with --trust: a bundle is code), which says where its scenario
source differs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
CHECKOUT = Path(__file__).resolve().parents[1]


def _lab(args: list[str], cwd: Path, runs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_RUNS_DIR": str(runs), "LAB_SCENARIOS_DIR": str(cwd / "tests" / "scenarios"),
           "PYTHONPATH": str(cwd)}  # this clone's lab
    return subprocess.run([sys.executable, "-m", "lab.doors.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, env=env, check=False)


def test_a_bundle_reruns_from_another_clone(tmp_path: Path) -> None:
    first = _lab(["run", "require-verbs"], CHECKOUT, tmp_path / "runs")
    assert first.returncode == 0, first.stderr[-3000:]
    packed = _lab(["bundle", "latest", "-o", str(tmp_path / "run.tar.gz")], CHECKOUT, tmp_path / "runs")
    assert packed.returncode == 0, packed.stderr

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(CHECKOUT), str(clone)], check=True)
    source = clone / "tests" / "scenarios" / "health.py"
    source.write_text(source.read_text().replace('"/run/lab-there"', '"/run/lab-here"'))
    asked = _lab(["rerun", str(tmp_path / "run.tar.gz")], clone, tmp_path / "clone-runs")  # no terminal, no yes
    assert asked.returncode == 2 and "a bundle is code" in asked.stderr, asked.stderr[-3000:]
    again = _lab(["rerun", str(tmp_path / "run.tar.gz"), "--trust"], clone, tmp_path / "clone-runs")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "scenario require-verbs: the source here differs from the bundle's (the bundle's runs):" in again.stdout
    assert '/run/lab-here' in again.stdout
    assert (tmp_path / "clone-runs" / "latest" / "provenance.json").is_file()
