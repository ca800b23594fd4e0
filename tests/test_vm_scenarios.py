"""Scenario variants beyond their choices (make nightly). Each scenario's default mode runs as an item of
scenarios/ (lab's pytest plugin): `make test` runs the mission scenarios, `make nightly` the field-bug
catalog too and, with --lab-variants, an item per other value of each scenario's choices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
VARIANTS = [("partition-v1", "reboots=8")]  # the reboot race, given the chances the old race needed


def _passes(name: str, sets: list[str], runs: Path) -> None:
    argv = [sys.executable, "-m", "lab.cli", "run", name, *(a for s in sets for a in ("--set", s))]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "LAB_RUNS_DIR": str(runs)}, check=False)
    result = json.loads((runs / "latest" / "result.json").read_text())
    assert proc.returncode == 0, f"{name} {sets}: {result.get('failure', proc.stderr[-4000:])}"
    assert result["status"] == "passed"
    assert result["steps"] and all(step["status"] == "passed" for step in result["steps"])


@pytest.mark.nightly
@pytest.mark.parametrize(("name", "setting"), VARIANTS)
def test_variant_passes(name: str, setting: str, tmp_path: Path) -> None:
    _passes(name, [setting], tmp_path)
