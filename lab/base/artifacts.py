"""A run's directory: runs/<UTC stamp>-<scenario>/ with its logs and result."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


class RunDir:
    def __init__(self, root: Path, scenario: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f"{stamp}-{scenario}"
        self.path.mkdir(mode=0o700)  # transcripts, keys and evidence of a guest: its user's alone
        self.evidence_dir = self.path / "evidence"
        _swap_symlink(root / "latest", self.path.name)

    @property
    def console(self) -> Path:
        return self.path / "console.log"

    @property
    def transcript(self) -> Path:
        return self.path / "transcript.log"

    def write_evidence(self, name: str, text: str) -> Path:
        target = self.evidence_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target


def _swap_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)
