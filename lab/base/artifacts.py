"""A run's directory: runs/<UTC stamp>-<scenario>/ with its logs and result."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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

    def write_result(self, result: dict[str, Any]) -> None:
        tmp = self.path / "result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
        tmp.replace(self.path / "result.json")


def _swap_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def find_run_dir(root: Path, run_id: str) -> Path | None:
    """The newest artifacts directory of a run id (a re-run failure's attempts share it)."""
    for result in sorted(root.glob("*/result.json"), reverse=True):  # directories start with a UTC stamp
        if result.parent.is_symlink():  # runs/latest
            continue
        try:
            if json.loads(result.read_text()).get("run_id") == run_id:
                return result.parent
        except (OSError, ValueError):
            continue
    return None


def mark_flaky(run_dir: Path, attempts: list[dict[str, Any]]) -> None:
    """A run that passed after failed attempts is flaky, never a plain pass: say so in its result.json."""
    path = run_dir / "result.json"
    result = json.loads(path.read_text())
    result.update(status="flaky", attempts=attempts)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
