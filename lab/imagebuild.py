"""Build a lab image on the host from Debian's packages (mmdebstrap).

Needs no device-mapper and no mounts: the rootfs is a directory, turned into
an ext4 filesystem image with `mkfs.ext4 -d`, then into qcow2.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ImageError
from lab.log import Log


@dataclass(frozen=True)
class BuildRecipe:
    suite: str
    variant: str
    packages: tuple[str, ...]
    commands: tuple[str, ...]
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BuildOutput:
    disk: Path  # qcow2
    kernel: Path
    initrd: Path


def _run(argv: list[str], log: Log, what: str) -> None:
    log.transcript("+ " + shlex.join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    log.transcript(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ImageError(f"{what} failed (exit {proc.returncode}): {shlex.join(argv[:3])} ...\n{tail}")


def _hooks(recipe: BuildRecipe) -> list[str]:
    hooks = []
    for path, content in recipe.files:
        target = '"$1"' + shlex.quote(path)
        hooks.append(f"mkdir -p \"$(dirname {target})\" && printf %s {shlex.quote(content)} > {target}")
    for command in recipe.commands:
        hooks.append(f'chroot "$1" /bin/sh -ec {shlex.quote(command)}')
    return [f"--customize-hook={hook}" for hook in hooks]


def build_rootfs(recipe: BuildRecipe, rootdir: Path, log: Log) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed: run `make setup` (or `apt-get install mmdebstrap`)")
    argv = ["mmdebstrap", f"--variant={recipe.variant}", "--components=main",
            f"--include={','.join(recipe.packages)}", *_hooks(recipe), recipe.suite, str(rootdir)]
    with log.nested(f"mmdebstrap {recipe.suite} ({len(recipe.packages)} packages)"):
        _run(argv, log, "mmdebstrap")


def _only(pattern: str, directory: Path) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise ImageError(f"expected one {pattern} in {directory}, found {[p.name for p in found]}")
    return found[0]


def build_kernel_image(recipe: BuildRecipe, disk_size: str, workdir: Path, log: Log) -> BuildOutput:
    """A qcow2 with one ext4 filesystem labelled `root`, plus its kernel and initrd."""
    rootdir = workdir / "rootfs"
    build_rootfs(recipe, rootdir, log)
    kernel, initrd = workdir / "vmlinuz", workdir / "initrd.img"
    shutil.copyfile(_only("vmlinuz-*", rootdir / "boot"), kernel)
    shutil.copyfile(_only("initrd.img-*", rootdir / "boot"), initrd)
    raw, disk = workdir / "root.raw", workdir / "disk.qcow2"
    with log.nested(f"ext4 filesystem image ({disk_size})"):
        _run(["mkfs.ext4", "-q", "-L", "root", "-d", str(rootdir), str(raw), disk_size], log, "mkfs.ext4")
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], log, "qemu-img convert")
    raw.unlink()
    shutil.rmtree(rootdir)
    return BuildOutput(disk, kernel, initrd)
