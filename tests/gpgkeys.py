"""Throwaway OpenPGP keys for the signed-checksum tests (gpg in a temporary home)."""

from __future__ import annotations

import subprocess
from pathlib import Path


class SigningKey:
    def __init__(self, home: Path, uid: str) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True)
        self._gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        self._stop_agent()
        colons = self._gpg("--with-colons", "--fingerprint").stdout.splitlines()
        self.fingerprint = next(line.split(":")[9] for line in colons if line.startswith("fpr:"))

    def export(self, path: Path) -> Path:
        path.write_text(self._gpg("--armor", "--export").stdout)
        return path

    def clearsign(self, text: str, path: Path) -> Path:
        plain = path.with_suffix(".plain")
        plain.write_text(text)
        self._gpg("--yes", "--clearsign", "--output", str(path), str(plain))
        self._stop_agent()
        return path

    def _stop_agent(self) -> None:
        """gpg starts an agent for the secret key; none is left running after a test."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], check=True)

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback", *args],
                              capture_output=True, text=True, check=True)
