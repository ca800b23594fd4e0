"""A publisher's signed checksum file: only a good signature by the pinned key gives sha256s, read from
the signed part only."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.base.errors import ImageError
from lab.image.signed import verified_checksums
from tests.gpgkeys import SigningKey

SHA = "a" * 64
CHECKSUM = f"# Fedora-AtomicHost-29 CHECKSUM\nSHA256 (disk.qcow2) = {SHA}\n{'b' * 64}  other.iso\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningKey, SigningKey]:
    base = tmp_path_factory.mktemp("keys")
    publisher = SigningKey(base / "publisher", "Publisher <p@example.org>")
    return publisher, SigningKey(base / "other", "Other <o@example.org>")


def test_a_good_signature_by_the_pinned_key_gives_the_sums(keys: tuple[SigningKey, SigningKey], tmp_path: Path) -> None:
    publisher, _ = keys
    signed = publisher.clearsign(CHECKSUM, tmp_path / "CHECKSUM")
    sums = verified_checksums(signed, publisher.export(tmp_path / "key.asc"), publisher.fingerprint)
    assert sums == {"disk.qcow2": SHA, "other.iso": "b" * 64}


def test_a_tampered_file_is_refused(keys: tuple[SigningKey, SigningKey], tmp_path: Path) -> None:
    publisher, _ = keys
    signed = publisher.clearsign(CHECKSUM, tmp_path / "CHECKSUM")
    signed.write_text(signed.read_text().replace(SHA, "c" * 64))
    with pytest.raises(ImageError, match=r"no good signature .*BADSIG"):
        verified_checksums(signed, publisher.export(tmp_path / "key.asc"), publisher.fingerprint)


def test_another_key_is_refused_even_when_shipped(keys: tuple[SigningKey, SigningKey], tmp_path: Path) -> None:
    publisher, other = keys
    signed = other.clearsign(CHECKSUM, tmp_path / "CHECKSUM")
    with pytest.raises(ImageError, match=f"signed by {other.fingerprint}, not by the manifest's key"):
        verified_checksums(signed, other.export(tmp_path / "key.asc"), publisher.fingerprint)
    with pytest.raises(ImageError, match="NO_PUBKEY"):
        verified_checksums(signed, publisher.export(tmp_path / "key.asc"), publisher.fingerprint)


def test_lines_outside_the_signature_are_not_read(keys: tuple[SigningKey, SigningKey], tmp_path: Path) -> None:
    publisher, _ = keys
    signed = publisher.clearsign(CHECKSUM, tmp_path / "CHECKSUM")
    signed.write_text(f"SHA256 (evil.qcow2) = {'d' * 64}\n" + signed.read_text())
    sums = verified_checksums(signed, publisher.export(tmp_path / "key.asc"), publisher.fingerprint)
    assert "evil.qcow2" not in sums


def test_a_missing_key_says_where_it_goes(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"key .*missing: put its public key there"):
        verified_checksums(tmp_path / "CHECKSUM", tmp_path / "keys" / "none.asc", "ABCD")


def test_the_fedora_manifest_pins_its_release_key() -> None:
    from lab.base.config import REPO_ROOT
    from lab.image.external import load_manifests

    fedora = load_manifests((REPO_ROOT / "images",))["fedora-atomic-29"]
    assert fedora.checksum_url.endswith("-CHECKSUM") and len(fedora.fingerprint) == 40
    assert fedora.signing_key == REPO_ROOT / "images" / "external" / "keys" / "fedora-29.asc"
