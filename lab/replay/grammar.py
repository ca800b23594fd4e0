"""What a value read from a sos report may look like. A report comes from elsewhere: every name, path, size
and percentage is checked here before anything is planned, and a value that breaks its grammar is refused
with the report file and the value that broke it (one line, exit 2)."""

from __future__ import annotations

import math
import posixpath
import re

from lab.base.errors import UsageError

UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
CEILING = 1 << 50  # 1 PiB: no disk, VG or LV of a real host is larger
CHUNK_MIN, CHUNK_MAX = 64 << 10, 1 << 30  # dm-thin's chunk sizes: multiples of 64 KiB up to 1 GiB
_LVM_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}")  # lvm(8) VALID NAMES
_DEVICE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+:-]{0,126}")  # a kernel block device under /dev, one level
_SIZE = re.compile(r"[<>]?(\d{1,18}(?:\.\d{1,6})?)([bkmgtp]?)")
_PERCENT = re.compile(r"\d{1,3}(?:\.\d{1,6})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PATH = re.compile(r"/[\w .+@:,=%~/-]{0,1023}")  # what mount points are made of; no shell or table characters


class BadValue(UsageError):
    """A report value that breaks its grammar."""


def lvm_name(text: str, what: str) -> str:
    """A VG or LV name as LVM accepts it: letters, digits and + _ . -, not starting with -, not . or .."""
    if not _LVM_NAME.fullmatch(text) or text in (".", ".."):
        raise BadValue(f"{what} {shown(text)}: not an LVM name (letters, digits, + _ . -)")
    return text


def device_name(text: str, what: str) -> str:
    """A block device's name under /dev ('vda2', 'sdb'): one path level, no shell or path characters."""
    if not _DEVICE.fullmatch(text):
        raise BadValue(f"{what} {shown(text)}: not a block device name")
    return text


def mount_path(text: str, what: str) -> str:
    """An absolute, normalised path of letters, digits, spaces and . + @ : , = % ~ - (quoted in commands all
    the same)."""
    if not _PATH.fullmatch(text) or (text != "/" and posixpath.normpath(text) != text):
        raise BadValue(f"{what} {shown(text)}: not an absolute, normalised path of letters, digits and . _ - + @ "
                       ": , = % ~")
    return text


def size(text: str, what: str, *, zero: bool = False) -> int:
    """An LVM or lsblk size ('71.63g', '<2.00g', '512.00m', '4G', '0') in bytes, positive (or zero where
    `zero`) and under CEILING."""
    match = _SIZE.fullmatch(text.strip().lower().replace("ib", "").rstrip("s"))
    if not match:
        raise BadValue(f"{what} {shown(text)}: not a size")
    value = int(float(match.group(1)) * UNITS[match.group(2) or "b"])
    if value > CEILING or (value <= 0 and not zero):
        raise BadValue(f"{what} {shown(text)}: a size must be {'0' if zero else 'above 0'} to 1 PiB")
    return value


def percent(text: str | None, what: str) -> float | None:
    """A Data% or Meta% (0-100); blank is None."""
    if text is None or not text.strip():
        return None
    value = float(text) if _PERCENT.fullmatch(text.strip()) else math.nan
    if not 0 <= value <= 100:
        raise BadValue(f"{what} {shown(text)}: not a percentage from 0 to 100")
    return value


def chunk(sectors: str, what: str) -> int:
    """A thin pool's chunk size from `dmsetup table` (512-byte sectors) in bytes, as lvcreate -c takes it."""
    value = int(sectors) * 512 if sectors.isdigit() and len(sectors) < 12 else 0
    if not CHUNK_MIN <= value <= CHUNK_MAX or value % CHUNK_MIN:
        raise BadValue(f"{what} {shown(sectors)} sectors: not a thin-pool chunk size (64 KiB steps up to 1 GiB)")
    return value


def shown(text: str) -> str:
    """A value from a report as it may be printed on a terminal or in a table: quoted, control characters
    (terminal escapes) replaced, cut at 60 characters."""
    return repr(printable(text[:60]) + ("..." if len(text) > 60 else ""))


def printable(text: str) -> str:
    return _CONTROL.sub("?", text)


MIN_SCALE = 1e-6  # below it a scaled size is no number of bytes (a petabyte becomes a gigabyte at 1e-6)


def scale(value: float) -> float:
    """--scale (or the factor that fits the budget): from MIN_SCALE to 1."""
    if not MIN_SCALE <= value <= 1:  # also false for nan
        raise UsageError(f"--scale {value:g}: a factor from {MIN_SCALE:g} to 1 (a host this large cannot be "
                         "replayed in the lab's disks)")
    return value
