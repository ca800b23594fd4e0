"""atomic-lab installed from a wheel (not the checkout) into a fresh venv, used from a user's own repository:
its pyproject.toml configures the lab, and its scenario and its `@pytest.mark.lab` test run on real guests,
with `lab run` and with pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
CHECKOUT = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[project]
name = "field-repro"
version = "0"

[tool.atomic-lab]
scenarios = ["repro"]
runs-dir = "lab-runs"
"""

SCENARIO = '''\
from lab.context import ScenarioContext
from lab.scenario import scenario


@scenario("field-hostname", "The guest answers with the hostname cloud-init gave it", memory=768, tags=("field",))
def field_hostname(lab: ScenarioContext) -> None:
    lab.record("hostname", lab.machine.succeed("hostname").strip())
'''

TEST = '''\
import pytest


@pytest.mark.lab(memory=768)
def test_the_guest_runs_systemd(machine):
    assert machine.succeed("ps -o comm= -p 1").strip() == "systemd"
'''


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_RUNS_DIR", "LAB_SCENARIOS_DIR", "PYTEST_"))}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800, env=env, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv outside the checkout with the checkout's wheel (and pytest) installed, not editable."""
    root = tmp_path_factory.mktemp("install")
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(CHECKOUT)],
                 root)
    assert build.returncode == 0, build.stderr[-3000:]
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)  # python3-libvirt
    wheel = next((root / "dist").glob("atomic_lab-*.whl"))
    pip = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel), "pytest"], root)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "repro").mkdir()
    (tmp_path / "repro" / "field.py").write_text(SCENARIO)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_field.py").write_text(TEST)
    return tmp_path


def test_an_installed_lab_runs_a_users_repository(installed: Path, repository: Path) -> None:
    lab = str(installed / "bin" / "lab")
    listing = _run([lab, "list"], repository)
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert {"smoke", "thinpool-full", "ostree-rollback", "field-hostname"} <= set(names), names

    config = _run([lab, "config"], repository).stdout
    scenarios = next(line.split() for line in config.splitlines() if line.startswith("scenarios "))
    assert scenarios[1].endswith(f":{repository / 'repro'}") and scenarios[2] == str(repository / "pyproject.toml")
    assert "/site-packages/lab/builtin/images" in config, config

    run = _run([lab, "run", "field-hostname"], repository)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (repository / "lab-runs" / "latest" / "result.json").is_file()

    tests = _run([str(installed / "bin" / "pytest"), "-p", "no:cacheprovider", "-q", "tests", "repro", "-m", "vm"],
                 repository)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "2 passed" in tests.stdout, tests.stdout[-3000:]
