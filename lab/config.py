"""Settings with their defaults, each overridable from the environment."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lab.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_cache_dir() -> Path:
    # qemu:///system runs QEMU as libvirt-qemu, which cannot traverse root's
    # 0700 home: keep the storage pool where it can reach it (as testcloud does).
    if os.geteuid() == 0:
        return Path("/var/lib/atomic-lab")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atomic-lab"


DEFAULT_POOL = "atomic-lab"


def pool_name_for(cache_dir: Path) -> str:
    """The default cache directory keeps the pool `atomic-lab`; any other gets a pool of its own, named
    after its path, so two cache directories never share images or saved guests."""
    if cache_dir.absolute() == _default_cache_dir():
        return DEFAULT_POOL
    digest = hashlib.sha256(str(cache_dir.absolute()).encode()).hexdigest()[:8]
    return f"{DEFAULT_POOL}-{digest}"


def vcpu_share(parallel: int) -> str:
    """LAB_MAX_VCPUS for one of `parallel` runs at once: its share of the host's cores, unless set."""
    return os.environ.get("LAB_MAX_VCPUS") or str(max(1, (os.cpu_count() or 1) // max(1, parallel)))


@dataclass(frozen=True)
class LibvirtHost:
    """A libvirt host reached over SSH (`qemu+ssh://user@host[:port]/system[?keyfile=K&no_verify=1]`).
    Guests' SSH ports are forwarded on that host's loopback, so the lab reaches them through it."""

    user: str
    host: str
    port: int
    keyfile: str | None
    verify: bool  # check the host's key against known_hosts (libvirt's no_verify=1 turns that off)

    @classmethod
    def from_uri(cls, uri: str) -> LibvirtHost | None:
        """None for a libvirt on this machine."""
        parts = urlsplit(uri)
        if not parts.hostname:
            return None
        if parts.scheme != "qemu+ssh":
            raise UsageError(f"LAB_LIBVIRT_URI={uri}: a remote libvirt host must be reached with qemu+ssh://, "
                             "since the guests' SSH ports listen on that host's loopback")
        query = parse_qs(parts.query)
        return cls(parts.username or os.environ.get("USER", "root"), parts.hostname, parts.port or 22,
                   query.get("keyfile", [None])[0], query.get("no_verify", ["0"])[0] != "1")


@dataclass(frozen=True)
class Config:
    libvirt_uri: str
    cache_dir: Path
    runs_dir: Path
    pool_name: str
    accel: str  # "auto", "kvm" or "tcg"
    timeout_factor: float
    tcg_timeout_factor: float
    boot_timeout: float | None  # LAB_BOOT_TIMEOUT: one base limit for every image, instead of each image's own
    max_vcpus: int  # a VM gets at most this many vCPUs (parallel runs share the host's cores)
    scenarios_dir: Path
    images_dir: Path
    cloudinit_dir: Path

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ.get
        cache_dir = Path(env("LAB_CACHE_DIR", str(_default_cache_dir()))).absolute()
        return cls(
            libvirt_uri=env("LAB_LIBVIRT_URI", "qemu:///system"),
            cache_dir=cache_dir,
            runs_dir=Path(env("LAB_RUNS_DIR", "runs")).absolute(),
            pool_name=env("LAB_POOL") or pool_name_for(cache_dir),
            accel=env("LAB_ACCEL", "auto"),
            timeout_factor=float(env("LAB_TIMEOUT_FACTOR", "1")),
            tcg_timeout_factor=float(env("LAB_TCG_TIMEOUT_FACTOR", "2")),
            boot_timeout=float(env("LAB_BOOT_TIMEOUT", "0")) or None,
            max_vcpus=int(env("LAB_MAX_VCPUS", str(os.cpu_count() or 1))),
            scenarios_dir=Path(env("LAB_SCENARIOS_DIR", str(REPO_ROOT / "scenarios"))),
            images_dir=Path(env("LAB_IMAGES_DIR", str(REPO_ROOT / "images"))),
            cloudinit_dir=Path(env("LAB_CLOUDINIT_DIR", str(REPO_ROOT / "cloudinit"))),
        )

    @property
    def libvirt_host(self) -> LibvirtHost | None:
        """The remote libvirt host, or None when libvirt runs here."""
        return LibvirtHost.from_uri(self.libvirt_uri)

    @property
    def pool_dir(self) -> Path:
        return self.cache_dir / "pool"

    @property
    def build_dir(self) -> Path:
        return self.cache_dir / "build"

    @property
    def state_dir(self) -> Path:
        """Per-run lock files and the accelerator probe's verdict."""
        return self.cache_dir / "state"
