"""Making images: on the host from Debian's packages, or inside a builder VM.

Host builds need no device-mapper and no mounts: mmdebstrap makes the rootfs
and `mkfs.ext4 -d` turns it into a filesystem image. Images with LVM, xfs and
a bootloader on the disk are assembled inside a lab VM (the host may have no
device-mapper): the VM gets a blank target disk and the rootfs tarball as a
read-only disk, and runs the recipe's assemble script as root.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.base.disks import Disk, parse_size
from lab.base.errors import ImageError
from lab.base.log import Log
from lab.base.progress import progress
from lab.image.store import Image, ImageCache, Recipe
from lab.provision.provision import MachineRequest, Provisioner
from lab.provision.warm import WarmStore

ASSEMBLE_TIMEOUT = 1800.0  # seconds, before the TCG scale factor


def _run(argv: list[str], log: Log, what: str, env: dict[str, str] | None = None) -> None:
    log.transcript("+ " + "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items()) + shlex.join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})})
    log.transcript(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ImageError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv[:3])} ...\n{tail}")


def _hooks(build: dict[str, Any]) -> list[str]:
    hooks = []
    for path, content in sorted(build.get("files", {}).items()):
        target = '"$1"' + shlex.quote(path)
        hooks.append(f"mkdir -p \"$(dirname {target})\" && printf %s {shlex.quote(content)} > {target}")
    for command in build.get("commands", ()):
        hooks.append(f'chroot "$1" /bin/sh -ec {shlex.quote(command)}')
    return [f"--customize-hook={hook}" for hook in hooks]


def mmdebstrap(build: dict[str, Any], target: Path, log: Log) -> None:
    """A Debian rootfs as a directory or, when `target` ends in .tar, a tarball; the recipe's `environment`
    reaches the packages' maintainer scripts and the recipe's commands."""
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed: run `make setup` (or `apt-get install mmdebstrap`)")
    packages = build["packages"]
    argv = ["mmdebstrap", f"--variant={build.get('variant', 'minbase')}", "--components=main",
            f"--include={','.join(packages)}", *_hooks(build), build["suite"], str(target)]
    with log.nested(f"mmdebstrap {build['suite']} ({len(packages)} packages)"):
        _run(argv, log, "mmdebstrap", build.get("environment"))


def _only(pattern: str, directory: Path) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise ImageError(f"expected one {pattern} in {directory}, found {[p.name for p in found]}")
    return found[0]


class ImageBuilder:
    """Returns cached images, building the ones the cache lacks."""

    def __init__(self, cache: ImageCache, log: Log, provisioner: Callable[[], Provisioner],
                 artifacts: Path) -> None:
        self.cache, self.log, self.artifacts = cache, log, artifacts
        self.provisioner = provisioner  # made on first use: only VM builds need one

    def ensure(self, name: str, *, rebuild: bool = False) -> Image:
        recipe = self.cache.recipe(name)
        image = recipe.image()
        with self.cache.lock(name):
            if rebuild:
                self._forget_saved_guests(image)
                self.cache.drop(image)
            if not self.cache.is_cached(image):
                self._build(recipe, image)
        return image

    def _forget_saved_guests(self, image: Image) -> None:
        for key in WarmStore(self.cache.config, self.cache.pool).discard_using(image.volumes):
            self.log.info(f"discarded saved guest {key}: it was made from the {image.name} being rebuilt")

    def _build(self, recipe: Recipe, image: Image) -> None:
        workdir = self.cache.config.build_dir / f"{recipe.name}-{recipe.digest}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            with self.log.nested(f"building image {recipe.name} (recipe {recipe.digest})"), \
                    progress(f"building image {recipe.name}", show=self.log.on_terminal):
                if recipe.method == "host":
                    self._build_on_host(recipe, image, workdir)
                else:
                    self._build_in_vm(recipe, image, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _build_on_host(self, recipe: Recipe, image: Image, workdir: Path) -> None:
        """One ext4 filesystem labelled `root` in a qcow2, plus the kernel and initrd beside it."""
        rootdir = workdir / "rootfs"
        mmdebstrap(recipe.build, rootdir, self.log)
        raw, disk = workdir / "root.raw", workdir / "disk.qcow2"
        with self.log.nested(f"ext4 filesystem image ({recipe.disk_size})"):
            _run(["mkfs.ext4", "-q", "-L", "root", "-d", str(rootdir), str(raw), recipe.disk_size], self.log,
                 "mkfs.ext4")
            _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], self.log, "qemu-img convert")
        assert image.kernel_volume and image.initrd_volume
        pool = self.cache.pool
        with self.log.nested("storing the image in the lab pool"):
            pool.upload_file(image.kernel_volume, _only("vmlinuz-*", rootdir / "boot"), "raw")
            pool.upload_file(image.initrd_volume, _only("initrd.img-*", rootdir / "boot"), "raw")
            pool.upload_file(image.disk_volume, disk, "qcow2")  # last: its presence marks the image complete

    def _build_in_vm(self, recipe: Recipe, image: Image, workdir: Path) -> None:
        tarball = workdir / "rootfs.tar"
        mmdebstrap(recipe.build, tarball, self.log)
        builder_image = self.ensure(recipe.build["builder_image"])
        provisioner = self.provisioner()
        pool = self.cache.pool
        with self.log.nested(f"uploading the rootfs ({tarball.stat().st_size >> 20} MiB)"):
            tar_volume = provisioner.upload("rootfs.tar", tarball)
        tarball.unlink()
        machine = provisioner.machine(MachineRequest(
            name="builder", image=builder_image, directory=self.artifacts / f"build-{recipe.name}",
            memory=1536, disks=(Disk(recipe.disk_size, "target"),), attach=((tar_volume, "rootfs"),)))
        target = f"{machine.spec.name}-target.qcow2"
        machine.start()
        machine.wait_for_boot()
        script = recipe.path.with_name(recipe.build["assemble"])
        machine.copy_to(script, "/tmp/assemble.sh")
        args = [str(a) for a in recipe.build.get("assemble_args", [])]
        with self.log.nested(f"assembling {recipe.name} in the builder VM ({script.name})"):
            machine.succeed(shlex.join(["bash", "/tmp/assemble.sh", "/dev/disk/by-id/virtio-target",
                                        "/dev/disk/by-id/virtio-rootfs", *args]),
                            timeout=provisioner.timeouts(ASSEMBLE_TIMEOUT))
        machine.shutdown()
        with self.log.nested("storing the image in the lab pool"):
            pool.clone(target, image.disk_volume, parse_size(recipe.disk_size))
        provisioner.teardown()
