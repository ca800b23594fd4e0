"""Print the lab's timings as figures (make bench); asserts nothing.

Runs `lab run smoke` and reads the milestones the run recorded in its
result.json: seconds from `lab run` to each one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MILESTONES = (
    ("image ready", "image_ready"),
    ("domain started", "domain_started"),
    ("first console output", "first_console_output"),
    ("cloud-init finished", "cloud_init_finished"),
    ("SSH ready", "ssh_ready"),
)


def run_smoke(runs: Path) -> dict[str, object]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", "smoke"], capture_output=True, text=True,
                          env={**os.environ, "LAB_RUNS_DIR": str(runs)}, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"bench: smoke failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads((runs / "latest" / "result.json").read_text())
    result["bench_wall"] = wall
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        result = run_smoke(Path(tmp))
    marks: dict[str, float] = result["marks"]  # type: ignore[assignment]
    print(f"smoke on {result['image']}, accelerator {result['accelerator']}")
    print(f"{'milestone':<28}{'s since lab run':>16}")
    for label, key in MILESTONES:
        value = marks.get(key)
        print(f"{label:<28}{value if value is not None else float('nan'):>16.2f}")
    print(f"{'whole scenario (wall)':<28}{result['bench_wall']:>16.2f}")
    started = marks.get("domain_started", 0.0)
    if "ssh_ready" in marks:
        print(f"{'domain start -> SSH ready':<28}{marks['ssh_ready'] - started:>16.2f}")


if __name__ == "__main__":
    main()
