"""Host-key pinning: the fingerprints cloud-init prints on the console are the only keys accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.base.errors import HostKeyMismatch
from lab.machine.ssh import KeyPair, SshSession
from lab.virt.console import host_key_fingerprints

# as cloud-init 22.4 writes it to the serial console (keys_to_console), syslog prefix included
CONSOLE = """\
[   37.8] cloud-init[398]: Cloud-init v. 22.4.2 running 'modules:final'
<14>Nov 23 20:44:39 cloud-init: #############################################################
<14>Nov 23 20:44:39 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----
<14>Nov 23 20:44:39 cloud-init: 256 SHA256:SWKsGw2ZvEqVR3m649bOLjtvV+c7VPf4O008ZBjr4O8 root@vm1 (ED25519)
<14>Nov 23 20:44:39 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----
<14>Nov 23 20:44:39 cloud-init: #############################################################
ci-info: | ssh-ed25519 | SHA256:notAhostKeyButAnAuthorizedUserKeyAAAAAAAAAA | - | lab |
"""


def test_only_the_announced_fingerprints_are_read() -> None:
    assert host_key_fingerprints(CONSOLE) == {"SHA256:SWKsGw2ZvEqVR3m649bOLjtvV+c7VPf4O008ZBjr4O8"}
    assert host_key_fingerprints("no cloud-init here") == frozenset()


def _session(tmp_path: Path) -> tuple[SshSession, str]:
    key = KeyPair.generate(tmp_path / "key", "test")
    session = SshSession("127.0.0.1", 2222, "lab", key)
    return session, key.pkey().fingerprint


def test_a_pinned_session_accepts_only_the_announced_keys(tmp_path: Path) -> None:
    session, host_fp = _session(tmp_path)  # the session's own key stands in for the guest's host key
    session.pin(frozenset({host_fp}))
    stranger = KeyPair.generate(tmp_path / "other", "x").pkey()
    with pytest.raises(HostKeyMismatch, match="not one the guest announced"):
        session._host_key.missing_host_key(None, "127.0.0.1", stranger)  # type: ignore[arg-type]
    session._host_key.missing_host_key(None, "127.0.0.1", session.key.pkey())  # type: ignore[arg-type]
    assert session.host_key_fingerprint == host_fp


def test_pinning_keys_other_than_the_one_already_seen_is_refused(tmp_path: Path) -> None:
    session, host_fp = _session(tmp_path)
    session._host_key.missing_host_key(None, "127.0.0.1", session.key.pkey())  # type: ignore[arg-type]
    with pytest.raises(HostKeyMismatch, match=host_fp.replace("+", r"\+")):
        session.pin(frozenset({"SHA256:SWKsGw2ZvEqVR3m649bOLjtvV+c7VPf4O008ZBjr4O8"}))
