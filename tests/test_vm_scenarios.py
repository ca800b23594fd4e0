"""Every registered scenario once, in its default mode, on a real guest (smoke has its own test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import REPO_ROOT
from lab.scenario import Registry

pytestmark = pytest.mark.vm
SCENARIOS = [name for name in Registry.load(REPO_ROOT / "scenarios").names() if name != "smoke"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes(name: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", name], capture_output=True, text=True,
                          timeout=3600, env={**os.environ, "LAB_RUNS_DIR": str(tmp_path)}, check=False)
    result = json.loads((tmp_path / "latest" / "result.json").read_text())
    assert proc.returncode == 0, f"{name}: {result.get('failure', proc.stderr[-4000:])}"
    assert result["status"] == "passed"
    assert result["steps"] and all(step["status"] == "passed" for step in result["steps"])
