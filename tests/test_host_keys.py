"""Host-key pinning: each guest gets a host key the lab made, and the session accepts only that one."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
import pytest

from lab.base.errors import HostKeyMismatch
from lab.machine.ssh import HostKey, KeyPair, SshSession


def test_the_host_key_the_lab_makes_is_the_one_paramiko_will_see() -> None:
    host = HostKey.generate()
    assert host.public_line.startswith("ssh-ed25519 ") and "PRIVATE KEY" in host.private_text
    shown = paramiko.Ed25519Key(data=base64.b64decode(host.public_line.split()[1]))
    assert shown.fingerprint == host.fingerprint


def _session(tmp_path: Path) -> tuple[SshSession, str]:
    key = KeyPair.generate(tmp_path / "key", "test")
    session = SshSession("127.0.0.1", 2222, "lab", key)
    return session, key.pkey().fingerprint


def test_a_pinned_session_accepts_only_the_lab_made_key(tmp_path: Path) -> None:
    session, host_fp = _session(tmp_path)  # the session's own key stands in for the guest's host key
    session.pin(frozenset({host_fp}))
    stranger = KeyPair.generate(tmp_path / "other", "x").pkey()
    with pytest.raises(HostKeyMismatch, match="not the one the lab gave"):
        session._host_key.missing_host_key(None, "127.0.0.1", stranger)  # type: ignore[arg-type]
    session._host_key.missing_host_key(None, "127.0.0.1", session.key.pkey())  # type: ignore[arg-type]
    assert session.host_key_fingerprint == host_fp


def test_pinning_keys_other_than_the_one_already_seen_is_refused(tmp_path: Path) -> None:
    session, host_fp = _session(tmp_path)
    session._host_key.missing_host_key(None, "127.0.0.1", session.key.pkey())  # type: ignore[arg-type]
    with pytest.raises(HostKeyMismatch, match=host_fp.replace("+", r"\+")):
        session.pin(frozenset({"SHA256:SWKsGw2ZvEqVR3m649bOLjtvV+c7VPf4O008ZBjr4O8"}))
