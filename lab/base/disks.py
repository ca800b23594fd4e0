"""The extra blank disks a guest asks for, and the sizes they are given in ('512M', '2G')."""

from __future__ import annotations

import re
from dataclasses import dataclass

SIZE_RE = re.compile(r"^(\d+)([KMGT]?)$")


def parse_size(text: str) -> int:
    """'512M', '2G' -> bytes (binary units)."""
    match = SIZE_RE.match(text.strip().upper())
    if not match:
        raise ValueError(f"bad size {text!r}: use a number with K, M, G or T")
    exponent = " KMGT".index(match.group(2) or " ")
    return int(match.group(1)) * int(1024**exponent)


@dataclass(frozen=True)
class Disk:
    """An extra blank virtio disk; its serial names it in /dev/disk/by-id/virtio-<serial>."""

    size: str
    serial: str

    @property
    def bytes(self) -> int:
        return parse_size(self.size)
