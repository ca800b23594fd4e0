"""A saved guest's memory: where libvirt writes it, and how a run gets a copy with its own domain XML.

libvirt refuses a changed name on `restore --xml` (a restore keeps the saved domain's identity), and two runs
restore one saved guest at once, so each restores a private copy whose header carries the run's XML (layout:
libvirt's qemu_saveimage.h; a header this code does not know means a cold boot, never a guess).

- libvirt on this machine (`LocalSaves`): `state/warm/<key>.save`, copied with copy_file_range.
- a remote libvirt host (`PoolSaves`): libvirt writes the file on that host, so it is a volume of the lab's
  pool there, `warm-<key>-memory.save`; a run clones it within the pool (the bytes never cross the network)
  and overwrites only the clone's header through a volume upload at offset 0.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.base.errors import HarnessError
from lab.virt.storage import Pool

# virQEMUSaveHeader: magic[16], version, data_len, was_running, format, cookieOffset, unused[14]
HEADER = struct.Struct("<16s5I56x")
MAGIC = b"LibvirtQemudSave"
VERSION = 2
RAW_FORMAT = 0
DATA_LIMIT = 1 << 20  # the XML and cookie libvirt writes take tens of KiB; a header saying more is refused


class WarmUnusable(HarnessError):
    """A save file this code cannot safely rewrite: the run boots cold instead."""


@dataclass(frozen=True)
class SaveFile:
    """The parts of a libvirt save file that a private copy rewrites."""

    data_len: int
    was_running: int
    xml: str
    cookie: bytes  # libvirt's save cookie (CPU model etc.), kept as it is

    @property
    def stream_offset(self) -> int:
        return HEADER.size + self.data_len

    @classmethod
    def read(cls, path: Path) -> SaveFile:
        with path.open("rb") as handle:
            return cls.parse(lambda offset, length: (handle.seek(offset), handle.read(length))[1], str(path))

    @classmethod
    def parse(cls, read: Callable[[int, int], bytes], where: str) -> SaveFile:
        """The header, XML and cookie, read with `read(offset, length)`."""
        raw = read(0, HEADER.size)
        if len(raw) != HEADER.size:
            raise WarmUnusable(f"{where}: too short for a libvirt save file")
        magic, version, data_len, was_running, fmt, cookie_offset = HEADER.unpack(raw)
        if (magic, version, fmt) != (MAGIC, VERSION, RAW_FORMAT):
            raise WarmUnusable(f"{where}: libvirt save header {magic!r} v{version} format {fmt} is not "
                               f"the uncompressed v{VERSION} this lab rewrites")
        if data_len > DATA_LIMIT or cookie_offset > data_len:
            raise WarmUnusable(f"{where}: a libvirt save header with {data_len} bytes of XML and cookie (cookie at "
                               f"{cookie_offset}); at most {DATA_LIMIT} are read")
        data = read(HEADER.size, data_len)
        xml_len = cookie_offset or data_len
        return cls(data_len, was_running, data[:xml_len].split(b"\0", 1)[0].decode(),
                   data[xml_len:].rstrip(b"\0") if cookie_offset else b"")

    def head(self, xml: str, where: str) -> bytes:
        """Everything before the memory stream, with `xml` in place of the saved domain's XML."""
        xml_bytes = xml.encode() + b"\0"
        cookie = self.cookie + b"\0" if self.cookie else b""
        if len(xml_bytes) + len(cookie) > self.data_len:
            raise WarmUnusable(f"{where}: the new domain XML does not fit the header's {self.data_len} bytes")
        header = HEADER.pack(MAGIC, VERSION, self.data_len, self.was_running, RAW_FORMAT,
                             len(xml_bytes) if cookie else 0)
        return header + xml_bytes + cookie + b"\0" * (self.data_len - len(xml_bytes) - len(cookie))

    def copy_with_xml(self, source: Path, target: Path, xml: str) -> None:
        """Write `target`: this save file with `xml` in its header, the same memory stream after it."""
        head = self.head(xml, str(source))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)  # guest memory: private
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            dst.write(head)
            dst.flush()
            _copy_rest(src.fileno(), dst.fileno(), self.stream_offset)


def _copy_rest(src: int, dst: int, offset: int) -> None:
    remaining = os.fstat(src).st_size - offset
    while remaining > 0:
        copied = os.copy_file_range(src, dst, remaining, offset)
        if copied == 0:
            raise WarmUnusable("the save file shrank while it was being copied")
        offset += copied
        remaining -= copied


class LocalSaves:
    """Save files in a directory of this machine (libvirt runs here)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def target(self, key: str) -> str:
        """Where libvirt writes the save of `key`."""
        return str(self.directory / f"{key}.save")

    def written(self, key: str) -> None:
        """The save of `key` is complete."""

    def exists(self, key: str) -> bool:
        return Path(self.target(key)).is_file()

    def read(self, key: str) -> SaveFile:
        return SaveFile.read(Path(self.target(key)))

    @contextmanager
    def private_copy(self, key: str, saved: SaveFile, xml: str, directory: Path, _prefix: str) -> Iterator[str]:
        """A copy of the save of `key` with `xml` in its header, for one restore; removed afterwards."""
        copy = directory / "restore.save"
        try:
            saved.copy_with_xml(Path(self.target(key)), copy, xml)
            yield str(copy)
        finally:
            copy.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        Path(self.target(key)).unlink(missing_ok=True)


class PoolSaves:
    """Save files as volumes of the lab's pool on the libvirt host (a remote one)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @staticmethod
    def volume(key: str) -> str:
        return f"warm-{key}-memory.save"

    def target(self, key: str) -> str:
        return str(self.pool.target_dir / self.volume(key))

    def written(self, key: str) -> None:
        self.pool.refresh()  # libvirt wrote the file into the pool's directory: make it a volume

    def exists(self, key: str) -> bool:
        return self.pool.lookup(self.volume(key)) is not None

    def read(self, key: str) -> SaveFile:
        name = self.volume(key)
        return SaveFile.parse(lambda offset, length: self.pool.read_bytes(name, offset, length), name)

    @contextmanager
    def private_copy(self, key: str, saved: SaveFile, xml: str, _directory: Path, prefix: str) -> Iterator[str]:
        name = f"{prefix}-restore.save"
        copy = self.pool.copy_raw(self.volume(key), name)
        try:
            self.pool.write_bytes(name, 0, saved.head(xml, self.volume(key)))
            yield str(copy.path())
        finally:
            self.pool.delete(name)

    def delete(self, key: str) -> None:
        self.pool.delete(self.volume(key))
