"""Settings with their defaults, each overridable from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_cache_dir() -> Path:
    # qemu:///system runs QEMU as libvirt-qemu, which cannot traverse root's
    # 0700 home: keep the storage pool where it can reach it (as testcloud does).
    if os.geteuid() == 0:
        return Path("/var/lib/atomic-lab")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atomic-lab"


def vcpu_share(parallel: int) -> str:
    """LAB_MAX_VCPUS for one of `parallel` runs at once: its share of the host's cores, unless set."""
    return os.environ.get("LAB_MAX_VCPUS") or str(max(1, (os.cpu_count() or 1) // max(1, parallel)))


@dataclass(frozen=True)
class Config:
    libvirt_uri: str
    cache_dir: Path
    runs_dir: Path
    pool_name: str
    accel: str  # "auto", "kvm" or "tcg"
    timeout_factor: float
    tcg_timeout_factor: float
    boot_timeout: float
    max_vcpus: int  # a VM gets at most this many vCPUs (parallel runs share the host's cores)
    scenarios_dir: Path
    images_dir: Path
    cloudinit_dir: Path

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ.get
        return cls(
            libvirt_uri=env("LAB_LIBVIRT_URI", "qemu:///system"),
            cache_dir=Path(env("LAB_CACHE_DIR", str(_default_cache_dir()))),
            runs_dir=Path(env("LAB_RUNS_DIR", "runs")).absolute(),
            pool_name=env("LAB_POOL", "atomic-lab"),
            accel=env("LAB_ACCEL", "auto"),
            timeout_factor=float(env("LAB_TIMEOUT_FACTOR", "1")),
            tcg_timeout_factor=float(env("LAB_TCG_TIMEOUT_FACTOR", "2")),
            boot_timeout=float(env("LAB_BOOT_TIMEOUT", "90")),
            max_vcpus=int(env("LAB_MAX_VCPUS", str(os.cpu_count() or 1))),
            scenarios_dir=Path(env("LAB_SCENARIOS_DIR", str(REPO_ROOT / "scenarios"))),
            images_dir=Path(env("LAB_IMAGES_DIR", str(REPO_ROOT / "images"))),
            cloudinit_dir=Path(env("LAB_CLOUDINIT_DIR", str(REPO_ROOT / "cloudinit"))),
        )

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
