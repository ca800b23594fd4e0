"""Where libvirt runs (here, or a remote host reached over SSH), and where each setting comes from: default,
the user's pyproject.toml, the environment."""

from pathlib import Path

import pytest

from lab.base.config import SETTINGS, Config, LibvirtHost, builtin_dir
from lab.base.errors import UsageError


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu:///session", "test:///default", "qemu+unix:///system"])
def test_libvirt_here(uri: str) -> None:
    assert LibvirtHost.from_uri(uri) is None


def test_a_remote_host_over_ssh_with_its_key_and_port() -> None:
    host = LibvirtHost.from_uri("qemu+ssh://lab@kvm7.example:2200/system?keyfile=/k/id&no_verify=1")
    assert host == LibvirtHost("lab", "kvm7.example", 2200, "/k/id", verify=False)
    assert LibvirtHost.from_uri("qemu+ssh://root@kvm7.example/system") == LibvirtHost(
        "root", "kvm7.example", 22, None, verify=True)


def test_a_remote_host_without_ssh_is_refused() -> None:
    with pytest.raises(UsageError, match="qemu\\+ssh://"):
        LibvirtHost.from_uri("qemu+tls://kvm7.example/system")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.atomic-lab]\nscenarios = ["lab", "more"]\nruns-dir = "out"\n'
                                             'default-image = "lab-atomic"\n')
    for setting in SETTINGS:  # CI sets some (LAB_CACHE_DIR, LAB_POOL)
        monkeypatch.delenv(setting.env, raising=False)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")  # found from a subdirectory too
    return tmp_path


def test_a_projects_settings_are_relative_to_its_pyproject(project: Path) -> None:
    config = Config.from_env()
    assert config.scenarios_dirs == (builtin_dir("scenarios").resolve(), project / "lab", project / "more")
    assert config.runs_dir == project / "out"
    assert config.default_image == "lab-atomic"
    assert config.sources["runs_dir"] == str(project / "pyproject.toml")
    assert config.sources["cache_dir"] == "default"


def test_the_environment_overrides_the_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_RUNS_DIR", "/srv/runs")
    config = Config.from_env()
    assert config.runs_dir == Path("/srv/runs")
    assert ("runs-dir", "/srv/runs", "LAB_RUNS_DIR") in config.describe()


def test_an_unknown_key_is_one_line(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.atomic-lab]\nscenario-dir = "lab"\n')
    with pytest.raises(UsageError, match=r"unknown key 'scenario-dir'.*known: .*scenarios"):
        Config.from_env()
