"""Archives and report directories others made (sos reports, lab bundles). Only the regular files a reader
asks for are copied, into a new private directory; no link, device or fifo is ever created, nothing is
written outside that directory, and sizes are capped. The same code runs on every Python the lab supports
(tarfile's extraction filters are not used: 3.11.2 has none, and 3.11.4-3.11.12's can be bypassed)."""

from __future__ import annotations

import lzma
import os
import re
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lab.base.errors import UsageError

Wanted = Callable[[str], bool]  # a member's normalised relative path -> copy it?
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    members: int = 200_000  # entries in the archive or directory
    unpacked: int = 4 << 30  # bytes the whole archive declares: all of it is decompressed to reach the members
    ratio: int = 200  # declared bytes per byte of archive (a decompression bomb's ratio is in the thousands)
    member: int = 32 << 20  # bytes of one copied file
    copied: int = 128 << 20  # bytes of all copied files


LIMITS = Limits()


@contextmanager
def extracted(source: Path, wanted: Wanted, prefix: str, limits: Limits = LIMITS) -> Iterator[Path]:
    """A private temporary directory holding the wanted regular files of `source` (a tar archive, compressed
    or not, or a directory), at their relative paths. A hostile or oversized input is a UsageError."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        budget = _Budget(source, limits)
        if source.is_dir():
            _copy_directory(source, Path(tmp), wanted, budget)
        else:
            _copy_archive(source, Path(tmp), wanted, budget)
        yield Path(tmp)


def relative(source: Path, name: str) -> str:
    """A member's name, normalised ('./a//b' -> 'a/b', '' for the top); refused when it is absolute, climbs
    out with '..', or holds control characters."""
    if name.startswith("/") or _CONTROL.search(name) or len(name) > 4096:
        raise UsageError(f"{source}: refusing it: member {name[:80]!r} has an absolute or unprintable name")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"{source}: refusing it: member {name[:80]!r} climbs out with '..'")
    return "/".join(parts)


class _Budget:
    """What an input may still cost: entries, declared bytes, copied bytes."""

    def __init__(self, source: Path, limits: Limits) -> None:
        self.source, self.limits = source, limits
        self.members = self.declared = self.copied = 0
        size = source.stat().st_size if source.is_file() else 0
        self.ceiling = min(limits.unpacked, max(size, 1 << 20) * limits.ratio) if size else limits.unpacked

    def entry(self, declared: int, count: int = 1) -> None:
        self.members += count
        self.declared += max(declared, 0)
        if self.members > self.limits.members:
            self._refuse(f"more than {self.limits.members} entries")
        if self.declared > self.ceiling:
            self._refuse(f"it unpacks to more than {self.ceiling >> 20} MiB")

    def copy(self, name: str, size: int) -> None:
        self.copied += size
        if size > self.limits.member:
            self._refuse(f"{name} is {size >> 20} MiB, over the {self.limits.member >> 20} MiB a file may have")
        if self.copied > self.limits.copied:
            self._refuse(f"the files read from it exceed {self.limits.copied >> 20} MiB")

    def _refuse(self, why: str) -> None:
        raise UsageError(f"{self.source}: refusing it: {why}")


def _copy_archive(archive: Path, root: Path, wanted: Wanted, budget: _Budget) -> None:
    try:
        with tarfile.open(archive) as tar:
            for member in iter(tar.next, None):
                budget.entry(member.size)
                name = relative(archive, member.name)
                if name and _is_plain_file(member) and wanted(name):
                    budget.copy(name, member.size)
                    stream = tar.extractfile(member)
                    assert stream is not None  # a regular member always has one
                    _write(archive, root, name, stream, member.size)
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise UsageError(f"{archive}: not a readable archive ({type(exc).__name__}: {exc})") from None


def _is_plain_file(member: tarfile.TarInfo) -> bool:
    """A regular file: links, devices, fifos and GNU sparse files (whose real size is the archive's say) are
    never created."""
    return member.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


def _copy_directory(top: Path, root: Path, wanted: Wanted, budget: _Budget) -> None:
    """A directory's regular files; links are not followed (a report's symlink may point anywhere)."""
    for here, dirs, files in os.walk(top, followlinks=False):
        budget.entry(0, count=len(dirs) + len(files))
        for file in files:
            path = Path(here, file)
            name = relative(top, path.relative_to(top).as_posix())
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and wanted(name):
                budget.copy(name, info.st_size)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as stream:
                    _write(top, root, name, stream, info.st_size)


def _write(source: Path, root: Path, name: str, stream: IO[bytes], size: int) -> None:
    """`name` under `root`, created (never opened over an existing entry), at most `size` bytes."""
    *dirs, base = name.split("/")
    where = root
    try:
        for part in dirs:
            where = where / part
            if not where.is_dir():  # only this module creates entries here, and never a link
                where.mkdir(mode=0o700)
        fd = os.open(where / base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise UsageError(f"{source}: refusing it: member {name!r} cannot be placed ({exc.strerror})") from None
    left = size
    with os.fdopen(fd, "wb") as out:
        while left > 0 and (chunk := stream.read(min(_CHUNK, left))):
            out.write(chunk)
            left -= len(chunk)
