"""Volumes in the lab's libvirt storage pool: images, overlays, disks, seeds.

Everything goes through libvirt's storage API (create, upload, delete), so the
same code serves a remote libvirt host.
"""

from __future__ import annotations

import contextlib
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import BinaryIO

import libvirt

from lab.base.errors import HarnessError, UsageError
from lab.base.retry import wait_until

RUN_PREFIX = "lab-run-"
REFRESH_WAIT = 900.0  # seconds another run's upload may hold the pool (a whole image upload)
UPLOAD_CHUNK = 4 * 1024 * 1024
RUN_FREE = 2 << 30  # bytes a run wants free in the pool: its overlay, disks and seed grow as the guest writes


def run_prefix(run_id: str) -> str:
    return f"{RUN_PREFIX}{run_id}-"


def _volume_xml(name: str, capacity: int, fmt: str, backing: tuple[str, str] | None = None) -> str:
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(volume, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type=fmt)
    permissions = ET.SubElement(target, "permissions")  # a run's own volumes (its seed too) are private
    ET.SubElement(permissions, "mode").text = "0600" if name.startswith(RUN_PREFIX) else "0644"
    if backing:
        store = ET.SubElement(volume, "backingStore")
        ET.SubElement(store, "path").text = backing[0]
        ET.SubElement(store, "format", type=backing[1])
    return ET.tostring(volume, encoding="unicode")


class Pool:
    """The lab's storage pool (a directory pool under the cache directory)."""

    def __init__(self, conn: libvirt.virConnect, name: str, directory: Path, *, create: bool = True) -> None:
        self.conn, self.name, self.directory = conn, name, directory
        self.create = create  # False: a read-only command's pool, never defined by it (absent, it has no volumes)
        self._pool: libvirt.virStoragePool | None = None

    def open(self) -> Pool:
        """Define, start or check the pool now (it is otherwise done on first use)."""
        _ = self.pool
        return self

    @property
    def pool(self) -> libvirt.virStoragePool:
        if self._pool is None:
            self._pool = self._ensure()
        return self._pool

    def _ensure(self) -> libvirt.virStoragePool:
        """The pool, defined and started if need be. Two processes may do this at once on a new cache (two
        test workers): whichever loses a step finds it done by the other, which is as good."""
        try:
            pool = self.conn.storagePoolLookupByName(self.name)
        except libvirt.libvirtError:
            pool = self._define()
        self._require_target(pool)
        if not pool.isActive():
            try:
                pool.create(0)
            except libvirt.libvirtError:
                if not pool.isActive():
                    raise
        _refresh(pool)
        return pool

    def _define(self) -> libvirt.virStoragePool:
        root = ET.Element("pool", type="dir")
        ET.SubElement(root, "name").text = self.name
        target = ET.SubElement(root, "target")
        ET.SubElement(target, "path").text = str(self.directory)
        try:
            pool = self.conn.storagePoolDefineXML(ET.tostring(root, encoding="unicode"), 0)
        except libvirt.libvirtError:
            return self.conn.storagePoolLookupByName(self.name)  # defined by another process meanwhile
        pool.build(0)
        pool.setAutostart(1)
        return pool

    def defined_at(self) -> Path | None:
        """Where libvirt keeps this pool's volumes, if a pool of this name is defined (none is made)."""
        try:
            pool = self.conn.storagePoolLookupByName(self.name)
        except libvirt.libvirtError:
            return None
        return _target(pool)

    def _require_target(self, pool: libvirt.virStoragePool) -> None:
        """A pool of this name that lives elsewhere would split the cache: images there, state here."""
        target = _target(pool)
        if target != self.directory.absolute():
            raise UsageError(f"libvirt pool {self.name!r} keeps its volumes in {target}, not in this cache's "
                             f"{self.directory}: set LAB_POOL to another name for a pool of this cache's own, "
                             f"or LAB_CACHE_DIR={target.parent} to use that one")

    def _absent(self) -> bool:
        """A read-only command's pool that is not defined: it has no volumes, and is not made to read them."""
        return not self.create and self.defined_at() is None

    def lookup(self, name: str) -> libvirt.virStorageVol | None:
        if self._absent():
            return None
        try:
            return self.pool.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return None

    def names(self) -> list[str]:
        """Every volume's name (all are made through libvirt, so libvirt knows them without a refresh)."""
        if self._absent():
            return []
        return list(self.pool.listVolumes())

    def create_blank(self, name: str, size: int, fmt: str = "qcow2") -> libvirt.virStorageVol:
        return self._create(_volume_xml(name, size, fmt))

    def create_overlay(self, name: str, backing: libvirt.virStorageVol, backing_format: str,
                       size: int | None = None) -> libvirt.virStorageVol:
        capacity = max(size or 0, backing.info()[1])
        return self._create(_volume_xml(name, capacity, "qcow2", (backing.path(), backing_format)))

    def upload_bytes(self, name: str, data: bytes, fmt: str = "raw") -> libvirt.virStorageVol:
        volume = self._create(_volume_xml(name, len(data), fmt))
        stream = self.conn.newStream(0)
        volume.upload(stream, 0, len(data), 0)
        for start in range(0, len(data), UPLOAD_CHUNK):
            stream.send(data[start:start + UPLOAD_CHUNK])
        stream.finish()
        return volume

    def upload_file(self, name: str, path: Path, fmt: str) -> libvirt.virStorageVol:
        """Copy a local file into a new volume through a libvirt stream."""
        size = path.stat().st_size
        volume = self._create(_volume_xml(name, size, "raw"))
        stream = self.conn.newStream(0)
        try:
            volume.upload(stream, 0, size, 0)
            with path.open("rb") as source:
                stream.sendAll(_read_chunk, source)
            stream.finish()
        except BaseException:
            _abort(stream)
            volume.delete(0)
            raise
        _refresh(self.pool)  # let libvirt probe the real format and capacity
        return self.pool.storageVolLookupByName(name)

    def clone(self, source: str, name: str, capacity: int) -> libvirt.virStorageVol:
        """A compact qcow2 copy of `source` (libvirt converts it with qemu-img)."""
        origin = self.pool.storageVolLookupByName(source)
        try:
            return self.pool.createXMLFrom(_volume_xml(name, capacity, "qcow2"), origin, 0)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"cannot copy volume {source} to {name}: {exc.get_error_message()}") from exc

    def copy_raw(self, source: str, name: str) -> libvirt.virStorageVol:
        """A byte-for-byte copy of `source`, made by libvirt on its host (a save file, for one restore)."""
        origin = self.pool.storageVolLookupByName(source)
        try:
            return self.pool.createXMLFrom(_volume_xml(name, int(origin.info()[1]), "raw"), origin, 0)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"cannot copy volume {source} to {name}: {exc.get_error_message()}") from exc

    def read_bytes(self, name: str, offset: int, length: int) -> bytes:
        """`length` bytes of a volume from `offset`, through a libvirt stream."""
        stream = self.conn.newStream(0)
        chunks: list[bytes] = []
        try:
            self.pool.storageVolLookupByName(name).download(stream, offset, length, 0)
            stream.recvAll(lambda _stream, data, _opaque: chunks.append(data), None)
            stream.finish()
        except BaseException:
            _abort(stream)
            raise
        return b"".join(chunks)

    def write_bytes(self, name: str, offset: int, data: bytes) -> None:
        """Overwrite `len(data)` bytes of a volume at `offset` (the rest stays as it is)."""
        stream = self.conn.newStream(0)
        try:
            self.pool.storageVolLookupByName(name).upload(stream, offset, len(data), 0)
            for start in range(0, len(data), UPLOAD_CHUNK):
                stream.send(data[start:start + UPLOAD_CHUNK])
            stream.finish()
        except BaseException:
            _abort(stream)
            raise

    @property
    def target_dir(self) -> Path:
        """The pool's directory on the libvirt host."""
        return _target(self.pool)

    def refresh(self) -> None:
        _refresh(self.pool)

    def require_free(self, need: int, what: str) -> None:
        """Fail now, before any VM starts, when the pool's disk is (nearly) full."""
        _refresh(self.pool)
        available = int(self.pool.info()[3])
        if available < need:
            raise HarnessError(f"not enough space for {what}: {available / 2**30:.2f} GiB free in storage pool "
                               f"{self.name!r} ({self.directory}), {need / 2**30:.1f} GiB wanted; free space there "
                               "(lab images prune, lab cleanup) or point LAB_CACHE_DIR at a bigger disk")

    def allocation(self, name: str) -> int:
        """Bytes the volume takes on the pool's disk."""
        return int(self.pool.storageVolLookupByName(name).info()[2])

    def modified(self, name: str) -> str:
        """When the volume's content was last written (its mtime, as libvirt reads it afresh)."""
        xml = ET.fromstring(self.pool.storageVolLookupByName(name).XMLDesc(0))
        return xml.findtext("target/timestamps/mtime", "")

    def sha256(self, name: str) -> str:
        """The volume's content digest, read through a libvirt stream (works on a remote host too)."""
        volume = self.pool.storageVolLookupByName(name)
        digest = hashlib.sha256()
        stream = self.conn.newStream(0)
        try:
            volume.download(stream, 0, 0, 0)
            stream.recvAll(lambda _stream, data, _opaque: digest.update(data), None)
            stream.finish()
        except BaseException:
            _abort(stream)
            raise
        return digest.hexdigest()

    def _create(self, xml: str) -> libvirt.virStorageVol:
        try:
            return self.pool.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise HarnessError(f"cannot create volume in pool {self.name!r}: {exc}") from exc

    def delete(self, name: str) -> bool:
        volume = self.lookup(name)
        if volume is None:
            return False
        volume.delete(0)
        return True


def forget_gone_pools(conn: libvirt.virConnect, prefix: str) -> list[str]:
    """Undefine the pools named `prefix-*` (those of other cache directories) whose directory is gone, as a
    test's temporary cache leaves them; returns their names. Their volumes went with the directory."""
    gone = []
    for pool in conn.listAllStoragePools(0):
        if pool.name().startswith(f"{prefix}-") and not _target(pool).is_dir():
            if pool.isActive():
                pool.destroy()
            pool.undefine()
            gone.append(pool.name())
    return gone


def _target(pool: libvirt.virStoragePool) -> Path:
    return Path(ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "").absolute()


def _refresh(pool: libvirt.virStoragePool) -> None:
    """Refresh the pool, waiting while another run's upload into it (an asynchronous job) blocks that."""

    def refreshed(last: bool) -> bool | None:
        try:
            pool.refresh(0)
        except libvirt.libvirtError as exc:
            if "asynchronous jobs running" in (exc.get_error_message() or "") and not last:
                return None
            raise
        return True

    wait_until(refreshed, what=f"a refresh of pool {pool.name()}", timeout=REFRESH_WAIT, interval=0.5)


def _read_chunk(_stream: libvirt.virStream, nbytes: int, source: BinaryIO) -> bytes:
    return source.read(min(nbytes, UPLOAD_CHUNK))


def _abort(stream: libvirt.virStream) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()
