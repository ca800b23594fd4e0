"""Print the lab's timings as tables (make bench); asserts nothing.

1. Boots of each image side by side: a cold boot and a warm start (a saved guest restored) to the first
   command, and a reboot of each to ready, with when each stage (shutdown, firmware, GRUB, kernel, systemd,
   sshd, cloud-init) showed on the console and systemd-analyze's phases of every boot (`BENCH_IMAGES` picks
   the images: default lab-bookworm, lab-atomic, lab-ostree). `BENCH_ROUNDS` (default 3) rounds alternate
   the cold and warm runs of every image, and each figure is the rounds' median: the host's speed drifts by
   a fifth within minutes, so one sample per cell compares moments, not boots. Then 5 warm starts in a row.
2. Wall time of four scenarios run with -j 1, one per core and one more, with how busy this host's CPUs
   were meanwhile.
3. Cold and warm time to the first command on libvirt here vs a "remote" libvirt host over qemu+ssh://
   (a local sshd on 127.0.0.1 plays it: scripts/loopback-remote.sh).
5. system-containers and docker-disk-move (two guests) with their setup done by the run (LAB_CHECKPOINTS=off)
   vs restored from their checkpoints.
4. With BENCH_BUILD=1, the cold build time of lab-atomic (`lab images build lab-atomic`: mmdebstrap,
   builder VM, upload; some minutes).
`BENCH_PARTS` picks the tables (default: boots build parallel remote setups).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

from lab.base.config import Config
from lab.base.log import Log
from lab.context import ScenarioContext
from lab.run.runner import Run, RunRequest
from lab.scenario import declare
from lab.virt.console import BOOT_TIMELINE, ConsoleWatcher

LAB = [sys.executable, "-m", "lab.doors.cli"]
PARALLEL_SET = ["smoke", "image-trust", "overlay-xfs", "atomic-host"]


def lab_run(args: list[str], runs: Path, **env: str) -> tuple[float, int, str]:
    start = time.monotonic()
    proc = subprocess.run([*LAB, "run", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "LAB_RUNS_DIR": str(runs), **env})
    return time.monotonic() - start, proc.returncode, proc.stdout + proc.stderr


def single(args: list[str], runs: Path, **env: str) -> dict[str, Any]:
    wall, code, output = lab_run(args, runs, **env)
    if code != 0:
        sys.exit(f"bench: lab run {' '.join(args)} failed (exit {code}):\n{output[-3000:]}")
    result: dict[str, Any] = json.loads((runs / "latest" / "result.json").read_text())
    # from typing `lab run` to the first scenario command: process start-up plus the run's own mark
    result["to_first_command"] = wall - result["wall_seconds"] + result["marks"]["ssh_ready"]
    return result


def parallel_table(runs: Path) -> None:
    cores = os.cpu_count() or 1
    print(f"\n{len(PARALLEL_SET)} scenarios ({', '.join(PARALLEL_SET)}), warm starts, {cores} cores")
    print(f"{'jobs':<6}{'wall':>9}{'host CPU busy':>15}  result")
    walls = {}
    for jobs in sorted({1, cores, cores + 1}):  # one more than the cores: do the guests' waits leave room?
        before = cpu_ticks()
        wall, code, output = lab_run([*PARALLEL_SET, "-j", str(jobs)], runs)
        busy, idle = (after - first for after, first in zip(cpu_ticks(), before, strict=True))
        walls[jobs] = wall
        print(f"-j {jobs:<3}{wall:>8.1f}s{100 * busy / max(busy + idle, 1):>14.0f}%  exit {code}: "
              f"{output.strip().splitlines()[-1]}")
    print("speed-up over -j 1: " + ", ".join(f"-j {jobs} {walls[1] / wall:.2f}x" for jobs, wall in walls.items()
                                              if jobs > 1))


def cpu_ticks() -> tuple[int, int]:
    """This host's CPU time since boot, busy and idle (waiting for I/O counts as idle), from /proc/stat."""
    user, nice, system, idle, iowait, *rest = map(int, Path("/proc/stat").read_text().split("\n")[0].split()[1:9])
    return user + nice + system + sum(rest), idle + iowait


def remote_table(runs: Path) -> None:
    script = str(Path(__file__).parent / "loopback-remote.sh")
    home = str(Config.from_env().state_dir / "loopback-remote")  # stable: its KVM probe verdict is cached
    uri = subprocess.run([script, home], capture_output=True, text=True, check=True).stdout.split()[-1]
    rows = []
    try:
        for label, env in (("here", {}), ("qemu+ssh", {"LAB_LIBVIRT_URI": uri})):
            rows.append((f"{label}, cold", single(["smoke", "--cold"], runs, **env)))
            single(["smoke"], runs, **env)  # saves a guest there if none is saved yet
            rows.append((f"{label}, warm", single(["smoke"], runs, **env)))
    finally:
        subprocess.run([script, "stop", home], check=False)
    print("\nsmoke: libvirt here vs a remote libvirt host over qemu+ssh:// (loopback sshd), cold and warm")
    print(f"{'libvirt':<16}{'SSH ready':>10}{'1st cmd':>9}{'whole':>8}  phases")
    for label, result in rows:
        phases = " ".join(f"{k}={v:g}" for k, v in result["phases"].items())
        print(f"{label:<16}{result['marks']['ssh_ready']:>10.1f}{result['to_first_command']:>9.1f}"
              f"{result['wall_seconds']:>8.1f}  {phases}")
    warm = {label: result["to_first_command"] for label, result in rows if label.endswith("warm")}
    print(f"remote warm start / local warm start, to the first command: "
          f"{warm['qemu+ssh, warm'] / warm['here, warm']:.2f}x")


SETUP_SCENARIOS = ("system-containers", "docker-disk-move")  # one guest; two, saved and restored together


def setups_table(runs: Path) -> None:
    """Scenarios with a setup: every run doing it (checkpoints off), then the run that saves the checkpoint
    (if none is saved yet), then one restoring it."""
    for scenario in SETUP_SCENARIOS:
        rows = [("checkpoints off", single([scenario], runs, LAB_CHECKPOINTS="off")),
                ("first run", single([scenario], runs)), ("restored", single([scenario], runs))]
        print(f"\n{scenario}: its setup done by the run vs restored from the checkpoint")
        print(f"{'run':<17}{'whole':>8}{'setup':>8}{'restore':>9}{'save':>7}  start")
        for label, result in rows:
            phases, start = result["phases"], result["start"]
            first = next(iter(start.values())) if isinstance(start, dict) else start  # each guest's: the same
            print(f"{label:<17}{result['wall_seconds']:>8.1f}{phases.get('setup', 0):>8.1f}"
                  f"{phases.get('restore', 0):>9.1f}{phases.get('save', 0):>7.1f}  {first}")
        print(f"restored / checkpoints off: {rows[2][1]['wall_seconds'] / rows[0][1]['wall_seconds']:.2f}x")


def build_table() -> None:
    if os.environ.get("BENCH_BUILD") != "1":
        print("\nlab-atomic cold build: not measured (BENCH_BUILD=1 rebuilds the image and times it)")
        return
    start = time.monotonic()
    proc = subprocess.run([*LAB, "images", "build", "lab-atomic"], capture_output=True, text=True, check=False)
    print(f"\nlab-atomic cold build: {time.monotonic() - start:.1f} s (exit {proc.returncode})")


ANALYZE = "systemd-analyze 2>/dev/null | head -n 1 | sed 's/^Startup finished in //'"
WARM_STARTS = 5
STAGES = ("shut_down", "firmware", "grub", "kernel", "systemd", "sshd", "cloud_init_finished", "ready")


def boot(image: str, cold: bool, runs: Path) -> dict[str, Any]:
    """One run of `image` that reboots its guest once: when each stage of the first boot (cold) and of the
    reboot showed on the console, seconds after the domain started / the reboot was asked for, and
    systemd-analyze's line for each boot."""
    seen: dict[str, Any] = {}

    def body(lab: ScenarioContext) -> None:
        vm = lab.machine
        seen["analyze first"] = vm.succeed(ANALYZE).strip() or "(restored: no boot)"
        start = time.monotonic()
        with ConsoleWatcher(vm.console_path, start, BOOT_TIMELINE, since=vm.get_console_size()) as watcher:
            vm.reboot()
        seen["reboot"] = {**watcher.seen, "ready": time.monotonic() - start}
        seen["analyze reboot"] = vm.succeed(ANALYZE).strip()

    marks = run_marks(image, cold, runs, body)
    origin = marks.get("domain_started", marks["image_ready"])
    seen["first"] = {k: marks[k] - origin for k in STAGES if k in marks} | {"ready": marks["ssh_ready"] - origin}
    return seen


def run_marks(image: str, cold: bool, runs: Path, body: Callable[[ScenarioContext], None]) -> dict[str, float]:
    """Run `body` on a guest of `image` in-process; the run's marks (seconds since it began)."""
    spec = declare("bench-boot", "boot timings", body, image=image)
    os.environ["LAB_RUNS_DIR"] = str(runs)
    run = Run(Config.from_env(), RunRequest(spec, {}, image=image, cold=cold), Log(terminal=False))
    with run.session() as ctx:
        body(ctx)
    marks: dict[str, float] = json.loads((run.artifacts / "result.json").read_text())["marks"]  # type: ignore[operator]
    return marks


def boot_table(runs: Path) -> None:
    images = os.environ.get("BENCH_IMAGES", "lab-bookworm lab-atomic lab-ostree").split()
    for image in images:
        boot(image, False, runs)  # makes sure a saved guest exists
    count = rounds()
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(count):
        for image in images:
            for label, cold in (("cold", True), ("warm", False)):
                samples.setdefault((image, label), []).append(boot(image, cold, runs))
    print(f"\nboots, the median of {count} rounds: seconds until each stage showed on the console, from the "
          "domain's start (cold boot) or the reboot's request ('-': not shown; a restore shows none); "
          "'ready' = the first command can run, with its range over the rounds")
    print(f"{'image':<13}{'boot':<12}" + "".join(f"{stage.split('_')[0]:>10}" for stage in STAGES) + "     range")
    for (image, label), seen in samples.items():
        for boot_label, key in ((label, "first"), (f"{label} reboot", "reboot")):
            cells = "".join(_median_cell([s[key] for s in seen], stage) for stage in STAGES)
            ready = [s[key]["ready"] for s in seen]
            print(f"{image:<13}{boot_label:<12}{cells}  {min(ready):>4.1f}-{max(ready):.1f}")
    print("systemd-analyze, medians, first boot | after the reboot:")
    for (image, label), seen in samples.items():
        print(f"  {image} {label}: {_analyze_median([s['analyze first'] for s in seen])} | "
              f"{_analyze_median([s['analyze reboot'] for s in seen])}")
    print(f"\nwarm start to the first command, {WARM_STARTS} restores in a row per image (min / median / max)")
    for image in images:
        starts = sorted(warm_start(image, runs) for _ in range(WARM_STARTS))
        print(f"  {image:<13}{starts[0]:>5.2f} /{starts[len(starts) // 2]:>5.2f} /{starts[-1]:>5.2f} s")


def rounds() -> int:
    value = os.environ.get("BENCH_ROUNDS", "3")
    if not value.isdigit() or int(value) < 1:
        print(f"BENCH_ROUNDS: {value!r} is not a count of rounds (1 or more)", file=sys.stderr)
        sys.exit(2)
    return int(value)


def _median_cell(boots: list[dict[str, float]], stage: str) -> str:
    values = [boot[stage] for boot in boots if stage in boot]
    return f"{median(values):>10.1f}" if values else f"{'-':>10}"


ANALYZE_PART = re.compile(r"(?:(\d+)min )?([\d.]+)s \((\w+)\)")


def _analyze_median(lines: list[str]) -> str:
    """systemd-analyze's phases ("4.0s (kernel) + 12.2s (userspace) = 16.2s"), each the median of `lines`."""
    phases: dict[str, list[float]] = {}
    for line in lines:
        for minutes, seconds, phase in ANALYZE_PART.findall(line):
            phases.setdefault(phase, []).append(60 * int(minutes or 0) + float(seconds))
    if not phases:
        return lines[0]  # a restore: no boot to analyze
    total = sum(median(values) for values in phases.values())
    return " + ".join(f"{median(values):.1f}s ({phase})" for phase, values in phases.items()) + f" = {total:.1f}s"


def warm_start(image: str, runs: Path) -> float:
    """Seconds from the image being ready to the restored guest's first command (a saved guest exists)."""
    marks = run_marks(image, False, runs, lambda lab: None)
    return marks["ssh_ready"] - marks["image_ready"]


def measured_on(runs: Path) -> str:
    """What the figures were measured on: the accelerator the runs used (and why), the host's cores."""
    results = sorted(runs.glob("*/result.json"))
    record = json.loads(results[-1].read_text()) if results else {}
    accelerator = f"{record.get('accelerator', '?')} ({record.get('accelerator_reason', 'no run recorded it')})"
    where = Config.from_env().libvirt_uri
    return f"measured with accelerator {accelerator}, on {os.cpu_count()} cores, libvirt {where}"


TABLES = {"boots": boot_table, "build": lambda _: build_table(), "parallel": parallel_table, "remote": remote_table,
          "setups": setups_table}


def main() -> None:
    parts = os.environ.get("BENCH_PARTS", " ".join(TABLES)).split()
    unknown = [part for part in parts if part not in TABLES]
    if unknown:
        print(f"BENCH_PARTS: no table {', '.join(unknown)} (choose from {', '.join(TABLES)})", file=sys.stderr)
        sys.exit(2)
    rounds()  # a bad count stops here, before any guest boots
    runs = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    for name, table in TABLES.items():
        if name in parts:
            table(runs)
    print(f"\n{measured_on(runs)}")
    shutil.rmtree(runs)  # kept when a table failed: its report names the run's artifacts in there


if __name__ == "__main__":
    main()
