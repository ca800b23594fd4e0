import shutil
from pathlib import Path

import pytest
import yaml

from lab.base.config import REPO_ROOT
from lab.base.errors import UsageError
from lab.machine.ssh import HostKey
from lab.virt.cloudinit import SeedInputs, build_seed_iso, read_seed_iso, render_seed_files

HOST = HostKey.generate()
INPUTS = SeedInputs(hostname="vm1", instance_id="lab-abc", user="lab",
                    ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample lab-run-abc",
                    host_private_key=HOST.private_text, host_public_key=HOST.public_line)


def test_seed_iso_round_trips_through_pycdlib() -> None:
    files = render_seed_files(REPO_ROOT / "cloudinit", INPUTS)
    label, read_back = read_seed_iso(build_seed_iso(files))
    assert label == "cidata"
    assert read_back == files


def test_user_data_authorises_only_the_run_key_and_no_password() -> None:
    files = render_seed_files(REPO_ROOT / "cloudinit", INPUTS)
    assert files["user-data"].startswith("#cloud-config\n")
    data = yaml.safe_load(files["user-data"])
    (user,) = data["users"]
    assert user["name"] == "lab"
    assert user["ssh_authorized_keys"] == [INPUTS.ssh_public_key]
    assert user["lock_passwd"] is True
    assert data["ssh_pwauth"] is False
    assert data["manage_etc_hosts"] is True


def test_meta_data_carries_instance_id_and_network_config_is_dhcp() -> None:
    files = render_seed_files(REPO_ROOT / "cloudinit", INPUTS)
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": "lab-abc", "local-hostname": "vm1"}
    assert yaml.safe_load(files["network-config"])["ethernets"]["eth0"]["dhcp4"] is True


def test_the_guest_gets_the_lab_made_host_key_and_makes_none_of_its_own() -> None:
    data = yaml.safe_load(render_seed_files(REPO_ROOT / "cloudinit", INPUTS)["user-data"])
    assert data["ssh_keys"] == {"ed25519_private": HOST.private_text.strip() + "\n",
                                "ed25519_public": HOST.public_line}
    assert data["ssh_deletekeys"] is True and data["ssh_genkeytypes"] == ["ed25519"]


def test_a_template_that_hands_no_host_key_is_refused(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "cloudinit", tmp_path / "cloudinit")
    user_data = tmp_path / "cloudinit" / "user-data.yaml"
    user_data.write_text(user_data.read_text().replace("${host_public_key}", "ssh-ed25519 AAAA"))
    with pytest.raises(UsageError, match="hands the guest no host key"):
        render_seed_files(tmp_path / "cloudinit", INPUTS)
