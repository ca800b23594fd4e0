"""`lab images import` and `lab images fetch`: a disk under a name, its profile and sha256; a file that
is no disk image, or not the manifest's, is refused with a clear message. Uses a private pool."""

from __future__ import annotations

import functools
import http.server
import json
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.base.config import REPO_ROOT, Config
from lab.doors.cli import main
from lab.image.store import file_digest
from lab.virt.hypervisor import connect
from tests.gpgkeys import SigningKey

pytestmark = pytest.mark.vm  # needs libvirt (no guest boots)

MANIFEST = """name = "tiny-host"
description = "A small disk standing in for an upstream image"
[source]
file = "tiny.qcow2"
url = "{url}"
sha256 = "{sha256}"
[profile]
login_user = "centos"
root_vg = "atomicos"
"""


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private pool and cache, and a copy of images/ that manifests can be added to."""
    pool = f"lab-test-import-{secrets.token_hex(3)}"
    images = tmp_path / "images"
    shutil.copytree(REPO_ROOT / "images", images)
    for key, value in (("LAB_POOL", pool), ("LAB_CACHE_DIR", str(tmp_path / "cache")),
                       ("LAB_IMAGES_DIR", str(images)), ("LAB_RUNS_DIR", str(tmp_path / "runs"))):
        monkeypatch.setenv(key, value)
    yield images
    for found in connect(Config.from_env().libvirt_uri).listAllStoragePools():
        if found.name() == pool:  # made only by a command that got past its checks
            for volume in found.listAllVolumes():
                volume.delete(0)
            found.destroy()
            found.undefine()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    raw, qcow2 = tmp_path / "tiny.raw", tmp_path / "tiny.qcow2"
    raw.write_bytes(b"\0" * 510 + b"\x55\xaa" + secrets.token_bytes(3 << 20))  # an MBR signature and data
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    return qcow2


def _manifest(images: Path, url: str, sha256: str) -> None:
    (images / "external" / "tiny-host.toml").write_text(MANIFEST.format(url=url, sha256=sha256))


def test_a_local_disk_is_imported_under_a_name_with_a_profile(lab_env: Path, disk: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "import", str(disk), "--as", "my-host", "--profile", "centos-atomic-7"]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {file_digest(disk)} (unverified" in out and "--image my-host" in out
    record = json.loads((Config.from_env().state_dir / "imports" / "my-host.json").read_text())
    assert record["profile"]["login_user"] == "centos" and record["format"] == "qcow2"
    assert main(["images", "list"]) == 0
    assert any(line.startswith("my-host") and "imported, unverified" in line
               for line in capsys.readouterr().out.splitlines())
    assert main(["images", "list", "--json"]) == 0
    mine = next(row for row in json.loads(capsys.readouterr().out) if row["name"] == "my-host")
    assert (mine["kind"], mine["state"], mine["sha256"]) == ("external", "imported, unverified",
                                                             {record["volume"]: file_digest(disk)})
    assert main(["images", "prune"]) == 0  # stale recipe versions go; imported disks stay
    assert main(["images", "list"]) == 0
    assert any(line.startswith("my-host") and "imported" in line for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize(("make", "message"), [
    ("truncated", "damaged qcow2"), ("text", "not a qcow2 or raw disk image")])
def test_a_file_that_is_no_disk_image_is_refused(lab_env: Path, disk: Path, make: str, message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = disk.with_name(f"{make}.qcow2")
    if make == "truncated":
        bad.write_bytes(disk.read_bytes()[: disk.stat().st_size // 2])
    else:
        bad.write_text("not a disk, only notes\n" * 200)
    assert main(["images", "import", str(bad), "--as", "my-host"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_disk_that_is_not_the_manifests_is_refused(lab_env: Path, disk: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _manifest(lab_env, "http://127.0.0.1:1/tiny.qcow2", "0" * 64)
    assert main(["images", "import", str(disk), "--as", "tiny-host"]) == 2
    assert f"sha256 {file_digest(disk)} is not the tiny.qcow2 of manifest tiny-host" in capsys.readouterr().err


@pytest.fixture
def served(disk: Path) -> Iterator[str]:
    """An HTTP server of the disk's directory, as a publisher's download site."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(disk.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_fetch_downloads_verifies_and_imports(lab_env: Path, disk: Path, served: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _manifest(lab_env, f"{served}/tiny.qcow2", file_digest(disk))
    assert main(["images", "fetch", "tiny-host"]) == 0
    captured = capsys.readouterr()
    assert "verified: the manifest's sha256" in captured.out
    assert "downloaded tiny.qcow2: " in captured.err  # a CI log's line; the bar is only for a terminal
    record = json.loads((Config.from_env().state_dir / "imports" / "tiny-host.json").read_text())
    assert record["verified"] and record["profile"]["root_vg"] == "atomicos"


@pytest.mark.parametrize("tamper", ["none", "checksum", "image", "signer"])
def test_fetch_verifies_the_publishers_signed_checksum(lab_env: Path, disk: Path, served: str, tamper: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Fedora's way: a CHECKSUM file beside the image, clearsigned with the release key, which ships with
    the manifest under its pinned fingerprint. A tampered CHECKSUM, image or signer is refused."""
    publisher = SigningKey(disk.parent / "gpg-publisher", "Publisher <p@example.org>")
    signer = SigningKey(disk.parent / "gpg-other", "Other <o@example.org>") if tamper == "signer" else publisher
    signer.clearsign(f"SHA256 (tiny.qcow2) = {file_digest(disk)}\n", disk.parent / "CHECKSUM")
    publisher.export(lab_env / "external" / "tiny-key.asc")
    (lab_env / "external" / "tiny-host.toml").write_text(MANIFEST.format(url=f"{served}/tiny.qcow2", sha256="") + (
        f'[signature]\nchecksum_url = "{served}/CHECKSUM"\nkey = "tiny-key.asc"\n'
        f'fingerprint = "{publisher.fingerprint}"\n'))
    if tamper == "checksum":
        checksum = disk.parent / "CHECKSUM"
        checksum.write_text(checksum.read_text().replace(file_digest(disk)[:8], "00000000"))
    if tamper == "image":
        with disk.open("ab") as image:
            image.write(b"\0" * 512)
    code = main(["images", "fetch", "tiny-host"])
    out, err = capsys.readouterr()
    if tamper == "none":
        assert code == 0 and f"verified: the publisher's checksum file, signed by {publisher.fingerprint}" in out
        return
    assert code == 2 and "refusing it" in err
    assert {"checksum": "BADSIG", "image": "is not the tiny.qcow2", "signer": "NO_PUBKEY"}[tamper] in err
    assert not (Config.from_env().state_dir / "imports" / "tiny-host.json").exists()
