"""The project as others meet it: its package metadata, and the example nightly workflow running what
`make nightly` runs, allowed to publish its JUnit report."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_nightly_workflow_is_make_nightly_in_shards() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    steps = workflow["jobs"]["scenarios"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert any(re.fullmatch(r'make nightly ARGS="--lab-shard \$\{\{ matrix.shard \}\}/4"\s*', run) for run in runs)
    assert not any("lab run" in run for run in runs)  # one set: no second list of what runs at night
    junit = re.search(r"--junitxml=(\S+)", (ROOT / "Makefile").read_text())
    assert junit and any(step.get("with", {}).get("report_paths") == junit.group(1) for step in steps)
    assert workflow["permissions"]["checks"] == "write"


def test_the_package_says_what_it_is() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["readme"] == "README.md" and project["license"] == "MIT"
    assert all((ROOT / name).is_file() for name in (project["readme"], *project["license-files"]))
    assert "Framework :: Pytest" in project["classifiers"]
    assert {"Homepage", "Issues"} <= set(project["urls"])


def test_the_plugin_brings_pytest() -> None:
    """The package registers a pytest plugin (pytest11): a user who installs it for @pytest.mark.lab gets
    pytest with it, not only in the dev extra."""
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert "lab" in project["entry-points"]["pytest11"]
    assert any(dep.split(">")[0].strip() == "pytest" for dep in project["dependencies"])
