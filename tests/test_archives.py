"""Archives from others extract inside their directory, with and without Python's extraction filters
(Debian bookworm's Python 3.11.2 has none)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from lab.base.archives import extracted
from lab.base.errors import UsageError


def _archive(path: Path, name: str, link: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = b"fine\n"
        info = tarfile.TarInfo("report/ok.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        member = tarfile.TarInfo(name)
        if link:
            member.type, member.linkname = tarfile.SYMTYPE, link
            tar.addfile(member)
        else:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


@pytest.mark.parametrize("filters", [True, False])
def test_members_stay_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool) -> None:
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with extracted(_archive(tmp_path / "good.tgz", "report/date", link="ok.txt"), "t-") as root:
        assert (root / "report" / "date").read_text() == "fine\n"
    for name, link in (("../evil", ""), ("report/up", "../../outside")):
        with pytest.raises(UsageError, match="refusing"), extracted(_archive(tmp_path / "bad.tgz", name, link), "t-"):
            pass
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()
