"""Warm starts: restore a saved, booted guest instead of booting one.

The first run of an image in a given VM shape boots it cold, waits until it is
ready and saves it with libvirt: memory in `state/warm/<key>.save`, disk frozen
in the read-only volume `warm-<key>-root.qcow2` (never written again), seed in
`warm-<key>-seed.iso`. Every later run restores a private copy of the save
file whose libvirt header carries the run's own domain XML (name, uuid, its
overlay on the frozen disk, console file, SSH port), then hot-plugs the
scenario's extra disks. libvirt refuses a changed name on `restore --xml`, so
the header is rewritten instead (layout: libvirt's qemu_saveimage.h); a header
this code does not know means a cold boot, never a guess.

The key hashes everything the saved guest depends on (image volumes and when
each was last written, memory, vCPUs, accelerator, cloud-init templates, the
code that renders domains and seeds): change any of it and the next run saves
a new guest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.base.errors import HarnessError
from lab.image.store import Image
from lab.machine.ssh import KeyPair
from lab.virt.storage import Pool

# virQEMUSaveHeader: magic[16], version, data_len, was_running, format, cookieOffset, unused[14]
HEADER = struct.Struct("<16s5I56x")
MAGIC = b"LibvirtQemudSave"
VERSION = 2
RAW_FORMAT = 0
_KEY_CODE = [Path(__file__).parent.parent / n for n in ("virt/domain.py", "virt/cloudinit.py", "provision/warm.py")]


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
            raw = handle.read(HEADER.size)
            if len(raw) != HEADER.size:
                raise WarmUnusable(f"{path}: too short for a libvirt save file")
            magic, version, data_len, was_running, fmt, cookie_offset = HEADER.unpack(raw)
            if (magic, version, fmt) != (MAGIC, VERSION, RAW_FORMAT):
                raise WarmUnusable(f"{path}: libvirt save header {magic!r} v{version} format {fmt} is not "
                                   f"the uncompressed v{VERSION} this lab rewrites")
            data = handle.read(data_len)
        xml_len = cookie_offset or data_len
        return cls(data_len, was_running, data[:xml_len].split(b"\0", 1)[0].decode(),
                   data[xml_len:].rstrip(b"\0") if cookie_offset else b"")

    def copy_with_xml(self, source: Path, target: Path, xml: str) -> None:
        """Write `target`: this save file with `xml` in its header, the same memory stream after it."""
        xml_bytes = xml.encode() + b"\0"
        cookie = self.cookie + b"\0" if self.cookie else b""
        if len(xml_bytes) + len(cookie) > self.data_len:
            raise WarmUnusable(f"{source}: the new domain XML does not fit the header's {self.data_len} bytes")
        header = HEADER.pack(MAGIC, VERSION, self.data_len, self.was_running, RAW_FORMAT,
                             len(xml_bytes) if cookie else 0)
        padding = b"\0" * (self.data_len - len(xml_bytes) - len(cookie))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)  # guest memory: private
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            dst.write(header + xml_bytes + cookie + padding)
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


def written(pool: Pool, volumes: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """When each volume was last written: a volume uploaded anew stales the guests saved on it. A run reads
    it once, for its key and its saved guest's record alike: a volume rewritten during the save then leaves
    a record that `WarmStore.prune` finds stale."""
    return tuple((name, pool.modified(name)) for name in volumes)


@dataclass(frozen=True)
class Shape:
    """What a saved guest is: restoring it elsewhere needs all of this to match."""

    image: Image
    memory_mib: int
    vcpus: int
    domain_type: str
    hypervisor: str  # QEMU and libvirt versions: a saved stream is only sure to load in the same ones
    written: tuple[tuple[str, str], ...]  # when each image volume was last written, read once (see `written`)
    peer_nic: bool = False  # a NIC between the run's guests (a guest's devices cannot change at a restore)
    clone: int = 0  # which guest of its run: each restores from a save of its own, so that they differ as hosts
    # do (machine-id, SSH host keys, boot id, the kernel's random state), not as twins of one saved guest


class WarmStore:
    """Saved guests: files under `state/warm/`, frozen disks and seeds in the lab pool."""

    def __init__(self, config: Config, pool: Pool) -> None:
        self.config, self.pool = config, pool
        self.directory = config.state_dir / "warm"

    def key(self, shape: Shape) -> str:
        h = hashlib.sha256(json.dumps({
            "volumes": dict(shape.written),
            "cmdline": shape.image.cmdline, "user": shape.image.login_user,
            "memory": shape.memory_mib, "vcpus": shape.vcpus, "type": shape.domain_type,
            "hypervisor": shape.hypervisor, **({"peer_nic": True} if shape.peer_nic else {}),
            **({"clone": shape.clone} if shape.clone else {}),
        }, sort_keys=True).encode())
        for path in [*sorted(self.config.cloudinit_dir.rglob("*")), *_KEY_CODE]:
            if path.is_file():
                h.update(path.name.encode() + path.read_bytes())
        return h.hexdigest()[:16]

    def save_path(self, key: str) -> Path:
        return self.directory / f"{key}.save"

    def key_pair(self, key: str) -> KeyPair:
        return KeyPair(self.directory / f"{key}.id_ed25519", str(self._meta(key)["public_key"]))

    def host_keys(self, key: str) -> frozenset[str]:
        """The saved guest's SSH host key fingerprints, as its console announced them."""
        return frozenset(self._meta(key).get("host_keys", ()))

    def _meta(self, key: str) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads((self.directory / f"{key}.json").read_text())
        return meta

    def new_key_pair(self, key: str) -> KeyPair:
        self.directory.mkdir(parents=True, exist_ok=True)
        return KeyPair.generate(self.directory / f"{key}.id_ed25519", f"lab-warm-{key}")

    @staticmethod
    def root_volume(key: str) -> str:
        return f"warm-{key}-root.qcow2"

    @staticmethod
    def seed_volume(key: str) -> str:
        return f"warm-{key}-seed.iso"

    def has(self, key: str) -> bool:
        names = set(self.pool.names())
        return self.save_path(key).is_file() and {self.root_volume(key), self.seed_volume(key)} <= names \
            and (self.directory / f"{key}.json").is_file()

    def failed_units(self, key: str) -> tuple[str, ...]:
        """The units that had failed when the guest was saved (a restore carries on from there)."""
        return tuple(self._meta(key).get("failed_units", ()))

    def mark_saved(self, key: str, keys: KeyPair, host_keys: frozenset[str], shape: Shape,
                   failed_units: tuple[str, ...]) -> None:
        """Written last: its presence (with the save file and volumes) makes the saved guest usable."""
        (self.directory / f"{key}.json").write_text(json.dumps(
            {"public_key": keys.public_line, "host_keys": sorted(host_keys), "image": shape.image.name,
             "failed_units": list(failed_units),
             "volumes": list(shape.image.volumes), "written": dict(shape.written),
             "memory_mib": shape.memory_mib, "vcpus": shape.vcpus, "domain_type": shape.domain_type},
            indent=2) + "\n")

    def touch(self, key: str) -> None:
        """Record a use (prune keeps recently used saved guests)."""
        (self.directory / f"{key}.json").touch()

    def prune(self, max_idle_days: float) -> list[str]:
        """Discard saved guests whose image volumes are gone or were written since the save, or that no run
        used for `max_idle_days`."""
        names = set(self.pool.names())

        def stale(meta: dict[str, Any], idle_days: float) -> bool:
            volumes = set(meta.get("volumes", ()))
            if not volumes <= names or idle_days > max_idle_days:
                return True
            return "written" in meta and meta["written"] != dict(written(self.pool, volumes))
        return self._discard_where(stale)

    def discard_using(self, volumes: Iterable[str]) -> list[str]:
        """Discard the saved guests made from any of `volumes`. For a rebuild, which stores new bytes under
        the same names: a frozen disk backs onto its image volume, and a guest restored over a rebuilt one
        reads blocks its memory never saw (binaries fail with 'Exec format error')."""
        replaced = set(volumes)
        return self._discard_where(lambda meta, _idle_days: bool(set(meta.get("volumes", ())) & replaced))

    def _discard_where(self, condition: Callable[[dict[str, Any], float], bool]) -> list[str]:
        discarded = []
        for meta_path in sorted(self.directory.glob("*.json")):
            key = meta_path.stem
            idle_days = (time.time() - meta_path.stat().st_mtime) / 86400
            if condition(self._meta(key), idle_days):
                with self.lock(key):
                    self.discard(key)
                discarded.append(key)
        return discarded

    def discard(self, key: str) -> None:
        """Remove a saved guest, complete or half-made."""
        for name in (self.root_volume(key), self.seed_volume(key)):
            self.pool.delete(name)
        for suffix in (".save", ".json", ".id_ed25519"):
            (self.directory / f"{key}{suffix}").unlink(missing_ok=True)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while a guest for `key` is being saved, so concurrent runs save it once."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{key}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
