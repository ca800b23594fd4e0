"""Two processes opening the lab's pool on a new cache at once (two test workers on a fresh machine): the one
that loses a step finds it done by the other and goes on. A fake of libvirt, no hypervisor."""

from __future__ import annotations

from pathlib import Path

import libvirt

from lab.virt.storage import Pool


class _RacedPool:
    """A pool the other process defines and starts just before this one tries."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.active = directory, False

    def XMLDesc(self, flags: int = 0) -> str:
        return f"<pool type='dir'><name>p</name><target><path>{self.directory}</path></target></pool>"

    def isActive(self) -> bool:
        return self.active

    def create(self, flags: int) -> None:
        self.active = True  # the other process started it first
        raise libvirt.libvirtError("Requested operation is not valid: storage pool 'p' is already active")

    def refresh(self, flags: int) -> None:
        pass

    def name(self) -> str:
        return "p"


class _RacedConn:
    def __init__(self, pool: _RacedPool) -> None:
        self.pool, self.lookups = pool, 0

    def storagePoolLookupByName(self, name: str) -> _RacedPool:
        self.lookups += 1
        if self.lookups == 1:
            raise libvirt.libvirtError("Storage pool not found")
        return self.pool

    def storagePoolDefineXML(self, xml: str, flags: int) -> _RacedPool:
        raise libvirt.libvirtError("operation failed: pool 'p' already exists")


def test_losing_the_race_to_define_and_start_the_pool_is_fine(tmp_path: Path) -> None:
    raced = _RacedPool(tmp_path.absolute())
    pool = Pool(_RacedConn(raced), "p", tmp_path)  # type: ignore[arg-type]
    assert pool.open().pool is raced and raced.active
