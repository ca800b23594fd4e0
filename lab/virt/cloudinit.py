"""NoCloud seed ISO (volume label `cidata`) built in memory with pycdlib."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pycdlib
import yaml

from lab.base.errors import UsageError

SEED_FILES = ("user-data", "meta-data", "network-config")


@dataclass(frozen=True)
class SeedInputs:
    hostname: str
    instance_id: str
    user: str
    ssh_public_key: str
    host_private_key: str  # the guest's SSH host key, the lab's (its first connection is already pinned)
    host_public_key: str


def render_seed_files(template_dir: Path, inputs: SeedInputs) -> dict[str, str]:
    """Fill the templates in `template_dir`; each result must still be YAML."""
    values = {
        "hostname": inputs.hostname,
        "instance_id": inputs.instance_id,
        "user": inputs.user,
        "ssh_public_key": inputs.ssh_public_key,
        "host_private_key": "\n".join("    " + line for line in inputs.host_private_key.strip().splitlines()),
        "host_public_key": inputs.host_public_key,
    }
    user_data = (template_dir / "user-data.yaml").read_text()
    if "${host_private_key}" not in user_data or "${host_public_key}" not in user_data:
        raise UsageError(f"{template_dir}/user-data.yaml hands the guest no host key: its ssh_keys must take "
                         "${host_private_key} and ${host_public_key} (see the lab's cloudinit/user-data.yaml)")
    files = {}
    for name in SEED_FILES:
        text = Template((template_dir / f"{name}.yaml").read_text()).substitute(values)
        yaml.safe_load(text)  # a broken template fails here, not silently in the guest
        files[name] = text
    return files


def build_seed_iso(files: dict[str, str]) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, text in files.items():
        data = text.encode()
        iso_name = "/" + name.replace("-", "").upper()[:8] + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed_iso(data: bytes) -> tuple[str, dict[str, str]]:
    """The volume label and the Rock Ridge files of a seed ISO (for tests and debugging)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files = {}
        for name in SEED_FILES:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue().decode()
        return label, files
    finally:
        iso.close()
