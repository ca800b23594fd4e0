"""Soak (make soak): `smoke` SERIAL times in a row, then two at once (-j 2) PARALLEL times; then
zero failures, and nothing left behind: no lab domain, no run volume, no `lab run` process.
Prints figures; exits non-zero on any failure or leftover."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.base.config import Config
from lab.virt.cleanup import inventory
from lab.virt.hypervisor import connect
from lab.virt.storage import Pool

LAB = [sys.executable, "-m", "lab.doors.cli", "run"]


def rounds(argv: list[str], count: int, runs: Path) -> tuple[int, list[float]]:
    failures, walls = 0, []
    for i in range(count):
        start = time.monotonic()
        proc = subprocess.run([*LAB, *argv], capture_output=True, text=True, check=False,
                              env={**os.environ, "LAB_RUNS_DIR": str(runs)})
        walls.append(time.monotonic() - start)
        if proc.returncode != 0:
            failures += 1
            # the run's whole report (a screenful by design): its cause comes before the console tail
            print(f"  round {i + 1}: exit {proc.returncode}\n{proc.stdout[-6000:]}{proc.stderr[-3000:]}")
    return failures, walls


def leftovers() -> list[str]:
    config = Config.from_env()
    pool = Pool(connect(config.libvirt_uri), config.pool_name, config.pool_dir)
    found = [f"run {run_id}: {len(o.domains)} domain(s), {len(o.volumes)} volume(s)"
             for run_id, o in inventory(pool.conn, pool).items()]
    procs = subprocess.run(["pgrep", "-af", "lab.doors.cli run|qemu-system"], capture_output=True, text=True,
                           check=False).stdout.split("\n")
    return found + [f"process: {p}" for p in procs if p.strip()]


def batch(label: str, argv: list[str], count: int, runs: Path) -> int:
    """`count` rounds of `lab run argv`, then a line of figures; the number that failed."""
    failures, walls = rounds(argv, count, runs)
    print(f"{label}: {failures} failed; wall min/mean/max "
          f"{min(walls):.1f}/{sum(walls) / len(walls):.1f}/{max(walls):.1f} s")
    return failures


def main() -> int:
    serial, parallel = int(os.environ.get("SOAK_SERIAL", "20")), int(os.environ.get("SOAK_PARALLEL", "10"))
    runs = Path(tempfile.mkdtemp(prefix="lab-soak-"))
    f1 = batch(f"smoke x{serial} in a row", ["smoke"], serial, runs)
    f2 = batch(f"smoke+smoke -j 2 x{parallel}", ["smoke", "smoke", "-j", "2"], parallel, runs)
    if f1 or f2:
        print(f"the runs' artifacts, failed ones included, are kept in {runs}")
    else:
        shutil.rmtree(runs)
    left = leftovers()
    print(f"left behind: {len(left)}" + "".join(f"\n  {item}" for item in left))
    return 1 if f1 or f2 or left else 0


if __name__ == "__main__":
    sys.exit(main())
