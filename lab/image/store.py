"""What an image is, its recipe and profile, and the image cache in the lab pool.

A cached image is a set of read-only volumes named `image-<name>-<digest>...`;
each run boots a copy-on-write overlay on top. How images are made is in
`lab.provision.builder`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import posixpath
import re
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.base.errors import ImageError, UsageError
from lab.base.log import Log
from lab.virt.storage import Pool

KERNEL_IMAGE = "lab-bookworm"  # the lab's own image whose kernel the KVM probe boots
BOOT_TIMEOUT = 120.0  # base seconds a boot (or reboot) may take to be ready, unless the recipe says otherwise
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")

# Code whose change must rebuild images (recipes add their own files).
_BUILD_CODE = Path(__file__).parent.parent / "provision" / "builder.py"


@dataclass(frozen=True)
class Profile:
    """How a scenario adapts to an image, instead of branching on image names."""

    login_user: str = "lab"
    root_vg: str | None = None  # volume group of the root LV, when root is on LVM
    root_lv: str | None = None
    storage_setup: str | None = None  # "docker-storage-setup", "container-storage-setup" or None
    rpm_ostree: bool = False
    ostree_booted: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ImageError(f"unknown profile keys {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Image:
    """What a run needs to boot an image: volume names, how to boot it, its profile."""

    name: str
    disk_volume: str
    disk_format: str
    profile: Profile = field(default_factory=Profile)
    kernel_volume: str | None = None  # direct kernel boot; None: firmware and the disk's bootloader
    initrd_volume: str | None = None
    cmdline: str = ""
    boot_timeout: float = BOOT_TIMEOUT  # base seconds, before the accelerator's scale

    @property
    def login_user(self) -> str:
        return self.profile.login_user

    @property
    def volumes(self) -> tuple[str, ...]:
        return tuple(v for v in (self.disk_volume, self.kernel_volume, self.initrd_volume) if v)


@dataclass(frozen=True)
class Recipe:
    """An image recipe from `images/<name>.toml` (see the files there)."""

    path: Path
    name: str
    description: str
    disk_size: str
    method: str  # "host": built on this machine; "builder-vm": assembled inside a lab VM
    boot: str  # "kernel" (direct) or "firmware"
    cmdline: str
    boot_timeout: float
    build: dict[str, Any]
    profile: Profile

    @classmethod
    def load(cls, path: Path) -> Recipe:
        data = tomllib.loads(path.read_text())
        build, boot = data["build"], data["boot"]
        _check_places(path, build)
        if "overlay" in build:  # files and commands shared by several recipes; the recipe's own files win
            overlay = path.with_name(build["overlay"])
            build = {**build, "files": {**_overlay_files(overlay), **build.get("files", {})},
                     "commands": [*(p.read_text() for p in _overlay_script(overlay)), *build.get("commands", ())]}
        recipe = cls(path=path, name=data["name"], description=data["description"],
                     disk_size=data["disk_size"], method=build.get("method", "host"),
                     boot=boot["method"], cmdline=boot.get("cmdline", ""),
                     boot_timeout=float(boot.get("timeout", BOOT_TIMEOUT)), build=build,
                     profile=Profile.from_dict(data.get("profile", {})))
        if recipe.method not in ("host", "builder-vm") or recipe.boot not in ("kernel", "firmware"):
            raise ImageError(f"{path}: build method {recipe.method!r} / boot method {recipe.boot!r} unknown")
        if recipe.method == "host" and recipe.boot != "kernel":
            raise ImageError(f"{path}: a host-built image boots its kernel directly (boot.method = 'kernel')")
        return recipe

    @property
    def files(self) -> list[Path]:
        """Every file the image is made from."""
        extra = [self.path.with_name(self.build["assemble"])] if "assemble" in self.build else []
        if "overlay" in self.build:
            overlay = self.path.with_name(self.build["overlay"])
            extra += [*_tree(overlay), *_overlay_script(overlay)]
        return [self.path, *extra, _BUILD_CODE]

    @property
    def digest(self) -> str:
        """Each file's place and bytes: an empty file (one that masks a unit or a generator) counts too."""
        h = hashlib.sha256()
        for path in self.files:
            data = path.read_bytes()
            place = path.name if path == _BUILD_CODE else path.relative_to(self.path.parent).as_posix()
            h.update(f"{place}\0{len(data)}\0".encode())
            h.update(data)
        return h.hexdigest()[:12]

    def image(self) -> Image:
        stem = f"image-{self.name}-{self.digest}"
        if self.boot == "kernel":
            return Image(self.name, f"{stem}.qcow2", "qcow2", self.profile, f"{stem}.vmlinuz",
                         f"{stem}.initrd", self.cmdline, self.boot_timeout)
        return Image(self.name, f"{stem}.qcow2", "qcow2", self.profile, boot_timeout=self.boot_timeout)


def _check_places(path: Path, build: dict[str, Any]) -> None:
    """A recipe writes only inside its image's root and reads only beside itself: a bundled recipe is someone
    else's, and `[build.files]` keys become paths under the rootfs on this host."""
    for key in build.get("files", {}):
        if not key.startswith("/") or posixpath.normpath(key) != key or key == "/" or _UNPRINTABLE.search(key):
            raise ImageError(f"{path}: [build.files] {key[:80]!r}: a file's path in the image must be absolute "
                             "and normalised (no '..')")
    for key in ("overlay", "assemble"):
        name = build.get(key, "x")
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            raise ImageError(f"{path}: build.{key} {str(name)[:80]!r}: a file or directory beside the recipe")


def _tree(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ImageError(f"recipe overlay {directory} is not a directory")
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _overlay_files(directory: Path) -> dict[str, str]:
    """The overlay's files by their path in the guest (written root-owned, whoever owns the checkout)."""
    return {"/" + str(p.relative_to(directory)): p.read_text() for p in _tree(directory)}


def _overlay_script(directory: Path) -> list[Path]:
    """The overlay's script, if it has one (`guest.sh` beside `guest/`): run before the recipe's commands."""
    script = directory.with_suffix(".sh")
    return [script] if script.is_file() else []


def load_recipes(images_dirs: tuple[Path, ...]) -> dict[str, Recipe]:
    """The recipes of every directory, by name: a later directory's recipe replaces an earlier one's."""
    recipes = (Recipe.load(p) for d in images_dirs for p in sorted(d.glob("*.toml")))
    return {r.name: r for r in recipes}


class ImageCache:
    """Cached images in the lab pool, and a lock per image for concurrent runs."""

    def __init__(self, config: Config, pool: Pool, log: Log) -> None:
        self.config, self.pool, self.log = config, pool, log

    def recipes(self) -> dict[str, Recipe]:
        return load_recipes(self.config.images_dirs)

    def recipe(self, name: str) -> Recipe:
        recipes = self.recipes()
        if name not in recipes:
            raise UsageError(f"unknown image {name!r}; known images: {', '.join(sorted(recipes))}")
        return recipes[name]

    def is_cached(self, image: Image) -> bool:
        names = set(self.pool.names())
        return all(v in names for v in image.volumes)

    def drop(self, image: Image) -> None:
        for volume in image.volumes:
            self.pool.delete(volume)

    def prune(self) -> list[str]:
        """Delete the volumes of images no recipe makes any more (older recipe hashes); returns them.
        Imported disk files (`image-file-*`) stay."""
        current = {v for recipe in self.recipes().values() for v in recipe.image().volumes}
        stale = [v for v in self.pool.names()
                 if v.startswith("image-") and not v.startswith("image-file-") and v not in current]
        for volume in stale:
            self.pool.delete(volume)
        return stale

    def from_file(self, path: Path) -> Image:
        """A user's own qcow2 or raw disk, booted by its own bootloader."""
        fmt = probe_disk_image(path)
        digest = file_digest(path)
        volume = f"image-file-{digest[:16]}.{fmt}"
        with self.lock(f"file-{digest[:16]}"):
            if self.pool.lookup(volume) is None:
                with self.log.nested(f"importing {path} into the lab pool"):
                    self.pool.upload_file(volume, path, fmt)
        return Image(path.name, volume, fmt)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.config.state_dir / f"image-{name}.lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with self.log.nested(f"waiting for another run to finish building image {name}"):
                    fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def probe_disk_image(path: Path) -> str:
    """'qcow2' or 'raw', or a UsageError saying why the file is no disk image."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    proc = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unreadable"
        raise UsageError(f"{path}: not a usable disk image ({reason})")
    info = json.loads(proc.stdout)
    fmt = str(info.get("format"))
    data_file = info.get("format-specific", {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or data_file:
        other = info.get("backing-filename") or data_file
        raise UsageError(f"{path}: refusing it: its data lives partly in {other!r}, a file of this host the guest "
                         f"would read; flatten it first (qemu-img convert -O qcow2 {path} flat.qcow2)")
    if fmt == "qcow2":
        check = subprocess.run(["qemu-img", "check", "-q", str(path)], capture_output=True, text=True,
                               check=False)
        if check.returncode != 0:
            lines = (check.stdout + check.stderr).strip().splitlines()
            raise UsageError(f"{path}: damaged qcow2 ({lines[-1] if lines else 'qemu-img check failed'})")
        return fmt
    if fmt == "raw" and _has_partition_table(path):
        return fmt
    raise UsageError(f"{path}: not a qcow2 or raw disk image (qemu-img sees {fmt!r} "
                     "with no partition table)")


def _has_partition_table(path: Path) -> bool:
    with path.open("rb") as disk:
        head = disk.read(1024)
    return head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()
