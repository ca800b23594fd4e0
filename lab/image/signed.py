"""A publisher's signed checksum file (Fedora's clearsigned CHECKSUM beside each release image), checked
with gpg against the publisher's key that ships with the manifest and whose fingerprint the manifest pins."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from lab.base.errors import ImageError

# Fedora's CHECKSUM lines ("SHA256 (FILE) = HEX") and sha256sum's ("HEX  FILE", "HEX *FILE")
_BSD = re.compile(r"^SHA256 \((?P<file>[^)]+)\) = (?P<hex>[0-9a-f]{64})$")
_GNU = re.compile(r"^(?P<hex>[0-9a-f]{64}) [ *](?P<file>\S+)$")


def normal_fingerprint(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def verified_checksums(signed: Path, key: Path, fingerprint: str) -> dict[str, str]:
    """file -> sha256 of the lines under the signature of `signed`, if that signature is good and made by
    the key whose primary fingerprint is `fingerprint`. Text outside the signed part is never read."""
    if not key.is_file():
        raise ImageError(f"the publisher's key {key} is missing: put its public key there (fingerprint "
                         f"{fingerprint}) to verify the image")
    with tempfile.TemporaryDirectory(prefix="lab-gpg-") as home:
        _gpg(home, "--import", str(key))
        plain = Path(home) / "signed-part"
        status = _gpg(home, "--status-fd", "1", "--output", str(plain), "--decrypt", str(signed), check=False)
        signers = [_primary(line) for line in status.stdout.splitlines() if line.startswith("[GNUPG:] VALIDSIG ")]
        if status.returncode != 0 or not signers:
            reason = [line.split()[1] for line in status.stdout.splitlines() if line.startswith("[GNUPG:] ")
                      and line.split()[1] in ("BADSIG", "ERRSIG", "NO_PUBKEY", "NODATA", "EXPKEYSIG", "REVKEYSIG")]
            raise ImageError(f"{signed.name}: no good signature by {fingerprint} ({', '.join(reason) or 'unsigned'}): "
                             "refusing it")
        if normal_fingerprint(fingerprint) not in signers:
            raise ImageError(f"{signed.name} is signed by {', '.join(signers)}, not by the manifest's key "
                             f"{fingerprint}: refusing it")
        return _sums(plain.read_text(errors="replace"))


def _gpg(home: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty", "--quiet", *args],
                          capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise ImageError(f"gpg {args[0]}: {proc.stderr.strip()}")
    return proc


def _primary(validsig: str) -> str:
    """The primary key's fingerprint of a VALIDSIG status line (a subkey may have made the signature)."""
    fields = validsig.split()[2:]
    return fields[9] if len(fields) > 9 else fields[0]


def _sums(text: str) -> dict[str, str]:
    found = (_BSD.match(line.strip()) or _GNU.match(line.strip()) for line in text.splitlines())
    return {match["file"]: match["hex"] for match in found if match}
