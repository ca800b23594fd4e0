"""What a scenario function gets: its machine, parameters, profile, steps and evidence."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.artifacts import RunDir
from lab.image import Profile
from lab.log import Log
from lab.machine import Machine

GUEST_TOOLS = Path(__file__).parent / "guest"  # programs scenarios copy into guests


class ScenarioContext:
    """What a scenario function gets: its machine, parameters and steps."""

    def __init__(self, machine: Machine, params: dict[str, Any], run_dir: RunDir, log: Log,
                 profile: Profile) -> None:
        self.machine, self.params, self.run_dir, self.log = machine, params, run_dir, log
        self.profile = profile  # how this image does things (storage setup tool, root VG, ...)
        self.steps: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}
        self.current_step = ""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.current_step = name
        start = time.monotonic()
        status = "failed"
        try:
            with self.log.nested(f"step: {name}"):
                yield
            status = "passed"
        finally:
            self.steps.append({"name": name, "status": status, "seconds": round(time.monotonic() - start, 2)})

    def evidence(self, name: str, text: str) -> None:
        """Keep guest output in the run's artifacts (evidence/<name>)."""
        self.run_dir.write_evidence(name, text)

    def fetch_evidence(self, remote: str, name: str) -> Path:
        """Copy a file the guest made (an archive, a dump) into the run's artifacts (evidence/<name>)."""
        local = self.run_dir.evidence_dir / name
        local.parent.mkdir(parents=True, exist_ok=True)
        self.machine.copy_from(remote, local)
        return local

    def record(self, key: str, value: Any) -> None:
        """A fact for result.json (a size reached, a message seen, a timing)."""
        self.facts[key] = value

    def install_guest_tool(self, name: str) -> str:
        """Copy lab/guest/<name>.py into the guest as /usr/local/sbin/<name, dashed>; returns that path."""
        target = f"/usr/local/sbin/{name.replace('_', '-')}"
        self.machine.copy_to(GUEST_TOOLS / f"{name}.py", f"/tmp/{name}.py")
        self.machine.succeed(f"install -m 0755 /tmp/{name}.py {target} && rm -f /tmp/{name}.py")
        return target
