"""A reboot's power cycle waits out libvirt still forgetting the stopped domain of the same name."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from lab.base.errors import HarnessError
from lab.machine import guest_domain
from lab.machine.guest_domain import GuestDomain
from lab.virt.domain import DomainSpec


class _Refusal(libvirt.libvirtError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def get_error_message(self) -> str:
        return self.message


class _Dom:
    def isActive(self) -> bool:
        return False

    def XMLDesc(self, _flags: int = 0) -> str:
        return "<domain/>"


class _Conn:
    """createXML refuses with each of `refusals` in turn, then creates."""

    def __init__(self, *refusals: str) -> None:
        self.refusals, self.created = list(refusals), 0

    def createXML(self, _xml: str, _flags: int) -> _Dom:
        if self.refusals:
            raise _Refusal(self.refusals.pop(0))
        self.created += 1
        return _Dom()


def _cycled(tmp_path: Path, conn: _Conn) -> GuestDomain:
    spec = DomainSpec(name="lab-run-abc-vm1", run_id="abc", domain_type="qemu", memory_mib=128, vcpus=1, disks=(),
                      console_path=str(tmp_path / "console.log"), ssh_port=1)
    (tmp_path / "console.log").write_text("")
    domain = GuestDomain(spec, conn, autodestroy=False)  # type: ignore[arg-type]
    domain._xml = "<domain/>"
    domain._power_cycle("its kernel restarted")
    return domain


def test_the_power_cycle_waits_while_libvirt_is_still_removing_the_stopped_domain(tmp_path: Path) -> None:
    conn = _Conn("operation failed: domain 'lab-run-abc-vm1' is already being removed")
    _cycled(tmp_path, conn)
    assert conn.created == 1


def test_any_other_refusal_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guest_domain, "REMOVAL_WAIT", 0.1)
    conn = _Conn("internal error: process exited while connecting to monitor", "never reached")
    with pytest.raises(HarnessError, match="process exited while connecting to monitor"):
        _cycled(tmp_path, conn)
    assert conn.refusals == ["never reached"]
