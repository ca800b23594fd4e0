"""Warm starts: restore a saved, booted guest instead of booting one.

The first run of an image in a given VM shape boots it cold, waits until it is ready and saves it with
libvirt: memory in a save file (lab.provision.saves: `state/warm/<key>.save` here, a pool volume on a
remote libvirt host), disk frozen in the read-only volume `warm-<key>-root.qcow2` (never written again),
seed in `warm-<key>-seed.iso`. Every later run restores a private copy of the save file whose header
carries the run's own domain XML (name, uuid, its overlay on the frozen disk, console, SSH port), then
hot-plugs the scenario's extra disks. A checkpoint (lab.setup) is a saved guest too, made from another
with a scenario's setup done: its record names that parent and every frozen disk.

The key hashes everything the saved guest depends on (image volumes and when each was last written,
memory, vCPUs, accelerator, the libvirt host, cloud-init templates, the code that renders domains and
seeds): change any of it and the next run saves a new guest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.image.store import Image
from lab.machine.ssh import KeyPair
from lab.provision.saves import LocalSaves, PoolSaves
from lab.provision.saves import WarmUnusable as WarmUnusable  # a saved guest that cannot be restored
from lab.virt.storage import Pool

_KEY_CODE = [Path(__file__).parent.parent / n for n in ("virt/domain.py", "virt/cloudinit.py", "provision/warm.py",
                                                       "provision/saves.py")]


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


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint's record adds to a saved guest's: where it starts and what it holds."""

    parent: str  # the saved guest its setup ran on
    setup: str
    run_id: str  # the run that made it
    disks: dict[str, str]  # its frozen volumes by disk serial
    together: tuple[str, ...] = ()  # with several guests, the others' saved guests: it is restored with them only


class WarmStore:
    """Saved guests: files under `state/warm/`, frozen disks and seeds in the lab pool."""

    def __init__(self, config: Config, pool: Pool) -> None:
        self.config, self.pool = config, pool
        self.directory = config.state_dir / "warm"
        # the memory files: here, or in the pool of the remote libvirt host that writes them
        self.saves = PoolSaves(pool) if config.libvirt_host else LocalSaves(self.directory)

    def key(self, shape: Shape) -> str:
        h = hashlib.sha256(json.dumps({
            "volumes": dict(shape.written),
            "cmdline": shape.image.cmdline, "user": shape.image.login_user,
            "memory": shape.memory_mib, "vcpus": shape.vcpus, "type": shape.domain_type,
            "hypervisor": shape.hypervisor, **({"peer_nic": True} if shape.peer_nic else {}),
            **({"libvirt": self.config.libvirt_uri} if self.config.libvirt_host else {}),
            **({"clone": shape.clone} if shape.clone else {}),
        }, sort_keys=True).encode())
        for path in [*sorted(self.config.cloudinit_dir.rglob("*")), *_KEY_CODE]:
            if path.is_file():
                h.update(path.name.encode() + path.read_bytes())
        return h.hexdigest()[:16]

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

    @staticmethod
    def disk_volume(key: str, serial: str) -> str:
        """A checkpoint's frozen copy of a disk the scenario gave its guest."""
        return f"warm-{key}-disk-{serial}.qcow2"

    def disks(self, key: str) -> dict[str, str]:
        """The saved guest's frozen volumes by disk serial (a guest saved before checkpoints: root and seed)."""
        saved: dict[str, str] = self._meta(key).get("disks") or {"lab-root": self.root_volume(key),
                                                                 "cidata": self.seed_volume(key)}
        return saved

    def checkpoint_key(self, parent: str, digest: str, disks: Iterable[tuple[str, int]],
                       together: Mapping[str, str] | None = None) -> str:
        """A checkpoint's key: the saved guest it starts from, its setup's digest, the disks it was given and,
        for one of a run's several guests, every guest's saved guest by host name (`together`)."""
        parts: list[Any] = [parent, digest, sorted(disks)]
        if together:
            parts.append(sorted(together.items()))
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def has(self, key: str) -> bool:
        if not ((self.directory / f"{key}.json").is_file() and self.saves.exists(key)):
            return False
        return set(self.disks(key).values()) <= set(self.pool.names())

    def failed_units(self, key: str) -> tuple[str, ...]:
        """The units that had failed when the guest was saved (a restore carries on from there)."""
        return tuple(self._meta(key).get("failed_units", ()))

    def mark_saved(self, key: str, keys: KeyPair, host_keys: frozenset[str], shape: Shape,
                   failed_units: tuple[str, ...], checkpoint: Checkpoint | None = None) -> None:
        """Written last: its presence (with the save file and volumes) makes the saved guest usable."""
        meta = {"public_key": keys.public_line, "host_keys": sorted(host_keys), "image": shape.image.name,
                "failed_units": list(failed_units),
                "volumes": list(shape.image.volumes), "written": dict(shape.written),
                "memory_mib": shape.memory_mib, "vcpus": shape.vcpus, "domain_type": shape.domain_type}
        if checkpoint:
            meta |= {"parent": checkpoint.parent, "setup": checkpoint.setup, "made_by": checkpoint.run_id,
                     "disks": checkpoint.disks, "together": list(checkpoint.together)}
        (self.directory / f"{key}.json").write_text(json.dumps(meta, indent=2) + "\n")

    def made_by(self, key: str) -> str:
        """The run that made a checkpoint."""
        return str(self._meta(key).get("made_by", ""))

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
            if "parent" in meta and not all(map(self.has, _made_from(meta))):
                return True  # a checkpoint whose saved guest (or a guest of its set's) is gone
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
            if not meta_path.exists():
                continue  # a checkpoint discarded with its saved guest
            idle_days = (time.time() - meta_path.stat().st_mtime) / 86400
            if condition(self._meta(key), idle_days):
                with self.lock(key):
                    self.discard(key)
                discarded.append(key)
        return discarded

    def discard(self, key: str) -> None:
        """Remove a saved guest, complete or half-made, and the checkpoints made from it (their disks are
        overlays on its own) or beside it (a set of several guests' is never restored without it)."""
        for meta_path in self.directory.glob("*.json"):
            if meta_path.exists() and key in _made_from(self._meta(meta_path.stem)):
                self.discard(meta_path.stem)
        for name in self.pool.names():
            if name.startswith(f"warm-{key}-"):
                self.pool.delete(name)
        self.saves.delete(key)
        for suffix in (".json", ".id_ed25519"):
            (self.directory / f"{key}{suffix}").unlink(missing_ok=True)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while a guest for `key` is being saved, so concurrent runs save it once."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{key}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _made_from(meta: dict[str, Any]) -> list[str]:
    """The saved guests a checkpoint needs: its parent, and with several guests the others' (none for a
    saved guest)."""
    return [meta["parent"], *meta.get("together", ())] if "parent" in meta else []
