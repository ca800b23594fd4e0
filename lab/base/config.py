"""Settings: defaults, then the [tool.atomic-lab] table of the nearest pyproject.toml that has one (the
user's repository), then the environment. `lab config` prints each with where it came from."""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab.base.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]  # a checkout's root
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "builtin"  # an installed package's images, cloudinit, scenarios


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
class Setting:
    """One setting: its environment variable, its key under [tool.atomic-lab] (None: environment only)."""

    field: str
    env: str
    key: str | None


SETTINGS = (
    Setting("libvirt_uri", "LAB_LIBVIRT_URI", "libvirt-uri"),  # qemu+ssh:// for a remote host
    Setting("cache_dir", "LAB_CACHE_DIR", "cache-dir"),  # images, saved guests and the pool's files
    Setting("runs_dir", "LAB_RUNS_DIR", "runs-dir"),  # each run's artifacts
    Setting("pool_name", "LAB_POOL", "pool"),  # default: named after the cache directory
    Setting("accel", "LAB_ACCEL", "accel"),  # auto, kvm or tcg
    Setting("timeout_factor", "LAB_TIMEOUT_FACTOR", "timeout-factor"),
    Setting("tcg_timeout_factor", "LAB_TCG_TIMEOUT_FACTOR", "tcg-timeout-factor"),
    Setting("boot_timeout", "LAB_BOOT_TIMEOUT", "boot-timeout"),  # one base limit for all images (0: each image's)
    Setting("max_vcpus", "LAB_MAX_VCPUS", None),  # parallel runs share the cores
    Setting("scenarios_dirs", "LAB_SCENARIOS_DIR", "scenarios"),  # the user's, beside the built-in ones
    Setting("images_dirs", "LAB_IMAGES_DIR", "images"),  # a recipe named like a built-in one replaces it
    Setting("cloudinit_dir", "LAB_CLOUDINIT_DIR", "cloudinit"),  # the seed templates
    Setting("default_image", "LAB_DEFAULT_IMAGE", "default-image"),  # of scenarios that name none
    Setting("sit_timeout", "LAB_SIT_TIMEOUT", "sit-timeout"),  # seconds --sit waits with a failed guest
    Setting("known_issues", "LAB_KNOWN_ISSUES", "known-issues"),  # failures reported known until a date
    Setting("checkpoints", "LAB_CHECKPOINTS", "checkpoints"),  # on: scenarios' setups are saved once (lab.setup)
)
TABLE = "tool.atomic-lab"  # in the pyproject.toml of the user's repository


def builtin_dir(name: str) -> Path:
    """A built-in directory (images, cloudinit, scenarios): an installed package's copy, else the checkout's."""
    packaged = PACKAGE_DATA / name
    return packaged if packaged.is_dir() else REPO_ROOT / name


def find_project(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.atomic-lab] table, with that table."""
    for directory in (start, *start.parents):
        path = directory / "pyproject.toml"
        if path.is_file():
            try:
                table = tomllib.loads(path.read_text()).get("tool", {}).get("atomic-lab")
            except tomllib.TOMLDecodeError as exc:
                raise UsageError(f"{path}: {exc}") from exc
            if table is not None:
                return path, table
    return None


def _defaults() -> dict[str, str]:
    return {"libvirt_uri": "qemu:///system", "cache_dir": str(_default_cache_dir()), "runs_dir": "runs",
            "pool_name": "", "accel": "auto", "timeout_factor": "1", "tcg_timeout_factor": "2", "boot_timeout": "0",
            "max_vcpus": str(os.cpu_count() or 1), "scenarios_dirs": "", "images_dirs": "",
            "cloudinit_dir": str(builtin_dir("cloudinit")), "default_image": "lab-bookworm",
            "sit_timeout": "900", "known_issues": "known-issues.toml", "checkpoints": "on"}


def _raw_settings() -> tuple[dict[str, str], dict[str, str]]:
    """Each setting's text and where it came from: the environment, the project's pyproject.toml, or default."""
    values, sources = _defaults(), dict.fromkeys(_defaults(), "default")
    project = find_project(Path.cwd())
    known = {s.key: s for s in SETTINGS if s.key}
    if project:
        path, table = project
        for key, value in table.items():
            if key not in known:
                raise UsageError(f"{path}: unknown key {key!r} in [{TABLE}] (known: {', '.join(sorted(known))})")
            items = value if isinstance(value, list) else [value]
            name = known[key].field
            values[name] = os.pathsep.join(_from(path.parent, str(v), name) for v in items)
            sources[name] = str(path)
    for setting in SETTINGS:
        if os.environ.get(setting.env):
            values[setting.field], sources[setting.field] = os.environ[setting.env], setting.env
    return values, sources


_PATHS = {"cache_dir", "runs_dir", "scenarios_dirs", "images_dirs", "cloudinit_dir", "known_issues"}


def _from(base: Path, value: str, name: str) -> str:
    """A path in pyproject.toml is relative to that file's directory."""
    return str(base / value) if name in _PATHS else value


def _switch(name: str, text: str) -> bool:
    value = {"on": True, "1": True, "yes": True, "off": False, "0": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise UsageError(f"setting {name}={text!r}: expected on or off")
    return value


def _dirs(text: str, builtin: str) -> tuple[Path, ...]:
    """The built-in directory, then the user's (os.pathsep-separated), each once."""
    found = [builtin_dir(builtin), *(Path(p).absolute() for p in text.split(os.pathsep) if p)]
    return tuple(dict.fromkeys(p.resolve() for p in found))


@dataclass(frozen=True)
class Config:
    libvirt_uri: str
    cache_dir: Path
    runs_dir: Path
    pool_name: str
    accel: str  # "auto", "kvm" or "tcg"
    timeout_factor: float
    tcg_timeout_factor: float
    boot_timeout: float | None  # one base limit for every image, instead of each image's own
    max_vcpus: int  # a VM gets at most this many vCPUs (parallel runs share the host's cores)
    scenarios_dirs: tuple[Path, ...]  # the built-in scenarios first
    images_dirs: tuple[Path, ...]  # the built-in recipes first; a later recipe of the same name wins
    cloudinit_dir: Path
    default_image: str
    sit_timeout: float
    known_issues: Path  # lab.run.known's file (absent: none)
    checkpoints: bool = True  # restore scenarios' setups from checkpoints (off: every run does its setup)
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # setting -> where it came from

    @classmethod
    def from_env(cls) -> Config:
        raw, sources = _raw_settings()
        cache_dir = Path(raw["cache_dir"]).absolute()
        try:
            return cls(
                libvirt_uri=raw["libvirt_uri"],
                cache_dir=cache_dir,
                runs_dir=Path(raw["runs_dir"]).absolute(),
                pool_name=raw["pool_name"] or pool_name_for(cache_dir),
                accel=raw["accel"],
                timeout_factor=float(raw["timeout_factor"]),
                tcg_timeout_factor=float(raw["tcg_timeout_factor"]),
                boot_timeout=float(raw["boot_timeout"]) or None,
                max_vcpus=int(raw["max_vcpus"]),
                scenarios_dirs=_dirs(raw["scenarios_dirs"], "scenarios"),
                images_dirs=_dirs(raw["images_dirs"], "images"),
                cloudinit_dir=Path(raw["cloudinit_dir"]).absolute(),
                default_image=raw["default_image"],
                sit_timeout=float(raw["sit_timeout"]),
                known_issues=Path(raw["known_issues"]).absolute(),
                checkpoints=_switch("checkpoints", raw["checkpoints"]),
                sources=sources,
            )
        except ValueError as exc:
            raise UsageError(f"a setting is not a number: {exc}") from exc

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value, where it came from) of every setting, for `lab config`."""
        rows = []
        for setting in SETTINGS:
            value = getattr(self, setting.field)
            text = os.pathsep.join(map(str, value)) if isinstance(value, tuple) else str(value)
            rows.append((setting.key or setting.env, text, self.sources.get(setting.field, "default")))
        return rows

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
