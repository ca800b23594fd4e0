"""Archives others made (sos reports, lab bundles), extracted into a temporary directory with nothing
written outside it."""

from __future__ import annotations

import posixpath
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.base.errors import UsageError


@contextmanager
def extracted(archive: Path, prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(tmp, filter="data")
            except tarfile.FilterError as exc:
                raise UsageError(f"{archive}: refusing it: {exc}") from exc
        else:  # Python before 3.11.4 (Debian bookworm's 3.11.2) has no filters: refuse what "data" refuses
            for member in tar.getmembers():
                _check(archive, member)
            tar.extractall(tmp)
        yield Path(tmp)


def _check(archive: Path, member: tarfile.TarInfo) -> None:
    def escapes(name: str) -> bool:
        return posixpath.isabs(name) or posixpath.normpath(name).split("/")[0] == ".."

    target = member.linkname if member.islnk() else posixpath.join(posixpath.dirname(member.name), member.linkname)
    if escapes(member.name) or member.isdev() or ((member.issym() or member.islnk()) and escapes(target)):
        raise UsageError(f"{archive}: refusing its member {member.name!r} (it would land outside the extraction)")
