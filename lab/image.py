"""Image recipes, the image cache, and images a user points at.

A cached image is a set of read-only volumes in the lab pool named
`image-<name>-<recipe hash>...`; each run gets a copy-on-write overlay on top.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import imagebuild
from lab.config import Config
from lab.errors import ImageError, UsageError
from lab.log import Log
from lab.storage import Pool

DEFAULT_IMAGE = "lab-bookworm"


@dataclass(frozen=True)
class Image:
    """What a run needs to boot an image: volume names and how to boot it."""

    name: str
    disk_volume: str
    disk_format: str
    login_user: str = "lab"
    kernel_volume: str | None = None
    initrd_volume: str | None = None
    cmdline: str = ""


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    description: str
    login_user: str
    disk_size: str
    build: imagebuild.BuildRecipe
    cmdline: str

    @classmethod
    def load(cls, path: Path) -> Recipe:
        data = tomllib.loads(path.read_text())
        build, boot = data["build"], data["boot"]
        if boot.get("method") != "kernel":
            raise ImageError(f"{path}: unknown boot method {boot.get('method')!r}")
        return cls(
            path=path, name=data["name"], description=data["description"],
            login_user=data.get("login_user", "lab"), disk_size=data["disk_size"],
            build=imagebuild.BuildRecipe(
                suite=build["suite"], variant=build.get("variant", "minbase"),
                packages=tuple(build["packages"]), commands=tuple(build.get("commands", ())),
                files=tuple(sorted(build.get("files", {}).items())),
            ),
            cmdline=boot["cmdline"],
        )

    @property
    def digest(self) -> str:
        """Changes whenever the recipe or the build code does."""
        h = hashlib.sha256(self.path.read_bytes())
        h.update(Path(imagebuild.__file__).read_bytes())
        return h.hexdigest()[:12]

    def image(self) -> Image:
        stem = f"image-{self.name}-{self.digest}"
        return Image(self.name, f"{stem}.qcow2", "qcow2", self.login_user,
                     f"{stem}.vmlinuz", f"{stem}.initrd", self.cmdline)


def load_recipes(images_dir: Path) -> dict[str, Recipe]:
    recipes = (Recipe.load(p) for p in sorted(images_dir.glob("*.toml")))
    return {r.name: r for r in recipes}


class ImageCatalog:
    def __init__(self, config: Config, pool: Pool, log: Log) -> None:
        self.config, self.pool, self.log = config, pool, log

    def recipes(self) -> dict[str, Recipe]:
        return load_recipes(self.config.images_dir)

    def recipe(self, name: str) -> Recipe:
        recipes = self.recipes()
        if name not in recipes:
            raise UsageError(f"unknown image {name!r}; known images: {', '.join(sorted(recipes))}")
        return recipes[name]

    def is_cached(self, image: Image) -> bool:
        names = set(self.pool.names())
        return all(v in names for v in (image.disk_volume, image.kernel_volume, image.initrd_volume) if v)

    def ensure(self, name: str, *, rebuild: bool = False) -> Image:
        """The named image, built first if the cache lacks this recipe's version."""
        recipe = self.recipe(name)
        image = recipe.image()
        with self._lock(name):
            if rebuild:
                for volume in (image.disk_volume, image.kernel_volume, image.initrd_volume):
                    if volume:
                        self.pool.delete(volume)
            if not self.is_cached(image):
                self._build(recipe, image)
        return image

    def _build(self, recipe: Recipe, image: Image) -> None:
        workdir = self.config.build_dir / f"{recipe.name}-{recipe.digest}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            with self.log.nested(f"building image {recipe.name} (recipe {recipe.digest})"):
                out = imagebuild.build_kernel_image(recipe.build, recipe.disk_size, workdir, self.log)
                with self.log.nested("uploading to the lab pool"):
                    # The disk last: its presence marks the image complete.
                    assert image.kernel_volume and image.initrd_volume
                    for volume, path, fmt in ((image.kernel_volume, out.kernel, "raw"),
                                              (image.initrd_volume, out.initrd, "raw"),
                                              (image.disk_volume, out.disk, "qcow2")):
                        self.pool.delete(volume)
                        self.pool.upload_file(volume, path, fmt)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def from_file(self, path: Path) -> Image:
        """A user's own qcow2 or raw disk, booted by its own bootloader."""
        fmt = probe_disk_image(path)
        digest = _file_digest(path)
        volume = f"image-file-{digest[:16]}.{fmt}"
        with self._lock(f"file-{digest[:16]}"):
            if self.pool.lookup(volume) is None:
                with self.log.nested(f"importing {path} into the lab pool"):
                    self.pool.upload_file(volume, path, fmt)
        return Image(path.name, volume, fmt)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.config.state_dir / f"image-{name}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def probe_disk_image(path: Path) -> str:
    """'qcow2' or 'raw', or a UsageError saying why the file is no disk image."""
    if not path.is_file():
        raise UsageError(f"--image {path}: no such file")
    proc = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unreadable"
        raise UsageError(f"--image {path}: not a usable disk image ({reason})")
    fmt = str(json.loads(proc.stdout).get("format"))
    if fmt == "qcow2":
        check = subprocess.run(["qemu-img", "check", "-q", str(path)], capture_output=True, text=True,
                               check=False)
        if check.returncode != 0:
            lines = (check.stdout + check.stderr).strip().splitlines()
            raise UsageError(f"--image {path}: damaged qcow2 ({lines[-1] if lines else 'qemu-img check failed'})")
        return fmt
    if fmt == "raw" and _has_partition_table(path):
        return fmt
    raise UsageError(f"--image {path}: not a qcow2 or raw disk image (qemu-img sees {fmt!r} "
                     "with no partition table)")


def _has_partition_table(path: Path) -> bool:
    with path.open("rb") as disk:
        head = disk.read(1024)
    return head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()
