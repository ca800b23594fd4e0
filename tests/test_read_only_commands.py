"""Commands that only read leave nothing behind: `lab images list` and `lab doctor` on a new cache directory
define no libvirt pool and create no directory. Needs libvirt (no guest boots)."""

from __future__ import annotations

import secrets
from pathlib import Path

import libvirt
import pytest

from lab.base.config import Config
from lab.doors.cli import main
from lab.virt.hypervisor import connect

pytestmark = pytest.mark.vm


def test_listing_and_checking_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pool = f"lab-readonly-{secrets.token_hex(3)}"
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LAB_POOL", pool)
    assert main(["images", "list"]) == 0
    listed = capsys.readouterr().out
    assert "lab-bookworm" in listed and "not cached" in listed
    main(["doctor"])
    with pytest.raises(libvirt.libvirtError):
        connect(Config.from_env().libvirt_uri).storagePoolLookupByName(pool)
    assert not (tmp_path / "cache").exists()
