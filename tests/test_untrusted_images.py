"""Disk images from elsewhere: one whose data lives partly in another file of this host (a backing file, an
external data file) is refused before it reaches a pool or a guest; manifests download over https. No
hypervisor needed (qemu-img only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.base.errors import ImageError, UsageError
from lab.image.external import Manifest
from lab.image.store import probe_disk_image


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_a_qcow2_backed_by_a_host_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"host data\n" * 1000)
    _qemu_img("create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(tmp_path / "backed.qcow2"))
    with pytest.raises(UsageError, match=r"secret\.raw.*flatten it first"):
        probe_disk_image(tmp_path / "backed.qcow2")


def test_a_qcow2_with_an_external_data_file_is_refused(tmp_path: Path) -> None:
    _qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}",
              str(tmp_path / "external.qcow2"), "16M")
    with pytest.raises(UsageError, match=r"data\.raw"):
        probe_disk_image(tmp_path / "external.qcow2")


def test_a_plain_qcow2_is_taken(tmp_path: Path) -> None:
    _qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "plain.qcow2"), "16M")
    assert probe_disk_image(tmp_path / "plain.qcow2") == "qcow2"


@pytest.mark.parametrize("url", ["http://cloud.example.org/x.qcow2", "ftp://example.org/x.qcow2"])
def test_a_manifest_downloads_over_https_only(tmp_path: Path, url: str) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'name = "m"\ndescription = "d"\n[source]\nfile = "x.qcow2"\nurl = "{url}"\n')
    with pytest.raises(ImageError, match="https"):
        Manifest.load(manifest)
    manifest.write_text(manifest.read_text().replace(url, "https://cloud.example.org/x.qcow2"))
    assert Manifest.load(manifest).url.startswith("https://")


@pytest.mark.parametrize("file", ["../../etc/cron.d/x", "/tmp/x.qcow2", "a b.qcow2", ".hidden", ""])
def test_a_manifests_file_is_a_name_not_a_path(tmp_path: Path, file: str) -> None:
    """Downloads are kept under the file's name in the lab's downloads directory: never a path out of it."""
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'name = "m"\ndescription = "d"\n[source]\nfile = "{file}"\nurl = "https://e.org/x"\n')
    with pytest.raises(ImageError, match="a file name is needed"):
        Manifest.load(manifest)
