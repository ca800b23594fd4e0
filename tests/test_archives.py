"""The reader of others' archives and directories: only wanted regular files, private, inside its directory
(the crafted cases are in test_untrusted_reports.py)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

from lab.base.archives import extracted


def _archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name in ("top/a/wanted.txt", "top/other.txt"):
            info = tarfile.TarInfo(name)
            info.size = 5
            tar.addfile(info, io.BytesIO(b"fine\n"))
        link = tarfile.TarInfo("top/a/link.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "wanted.txt"
        tar.addfile(link)
    return path


def test_only_wanted_regular_files_arrive_private(tmp_path: Path) -> None:
    with extracted(_archive(tmp_path / "a.tgz"), lambda name: name.startswith("top/a/"), "t-") as root:
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())
        assert files == ["top/a/wanted.txt"]  # the link is never created, other.txt is not wanted
        assert (root / "top/a/wanted.txt").read_text() == "fine\n"
        assert stat.S_IMODE((root / "top/a/wanted.txt").stat().st_mode) == 0o600
        assert stat.S_IMODE((root / "top/a").stat().st_mode) == 0o700
    assert not root.exists()


def test_a_directory_reads_like_its_archive(tmp_path: Path) -> None:
    with extracted(_archive(tmp_path / "a.tgz"), lambda _: True, "t-") as first, \
            extracted(first, lambda name: name.startswith("top/a/"), "t-") as second:
        assert [p.name for p in second.rglob("*.txt")] == ["wanted.txt"]
