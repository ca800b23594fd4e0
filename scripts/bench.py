"""Print the lab's timings as tables (make bench); asserts nothing.

0. Boots of each image side by side: cold boot to the first command, warm start (a saved guest restored)
   to the first command, and a reboot of each to ready, with systemd-analyze's phases of every boot
   (`BENCH_IMAGES` picks the images: default lab-bookworm, lab-atomic, lab-ostree).
1. Time from `lab run smoke` to its first scenario command: cold boot vs warm
   start (a saved guest restored), with each run's phases.
2. Wall time of four scenarios run with -j 1 and with -j 2.
3. Cold time to the first command on libvirt here vs a "remote" libvirt host over qemu+ssh:// (a
   local sshd on 127.0.0.1 plays it: scripts/loopback-remote.sh).
4. lab-atomic: warm time to the first command of `atomic-host`, and with BENCH_BUILD=1 the cold build
   time of the image (`lab images build lab-atomic`: mmdebstrap, builder VM, upload; some minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.config import Config
from lab.context import ScenarioContext
from lab.log import Log
from lab.runner import Run, RunRequest
from lab.scenario import declare

LAB = [sys.executable, "-m", "lab.cli"]
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


MILESTONES = (("image", "image_ready"), ("domain", "domain_started"), ("console", "first_console_output"),
              ("cloud-init", "cloud_init_finished"), ("SSH", "ssh_ready"))


def start_table(runs: Path) -> None:
    single(["smoke"], runs)  # makes sure a saved guest exists for the warm runs
    rows = [("cold", single(["smoke", "--cold"], runs)), ("warm", single(["smoke"], runs)),
            ("warm again", single(["smoke"], runs))]
    accel = rows[0][1].get("accelerator")
    print(f"\nsmoke: seconds from `lab run` to each milestone (accelerator {accel}; '-': not seen on a restore)")
    print(f"{'start':<11}" + "".join(f"{label:>11}" for label, _ in MILESTONES) + f"{'1st cmd':>9}{'whole':>8}")
    for label, result in rows:
        marks = result["marks"]
        cells = "".join(f"{marks[key]:>11.1f}" if key in marks else f"{'-':>11}" for _, key in MILESTONES)
        print(f"{label:<11}{cells}{result['to_first_command']:>9.1f}{result['wall_seconds']:>8.1f}")
    cold, warm = rows[0][1], rows[1][1]
    ratio = cold["to_first_command"] / warm["to_first_command"]
    print(f"cold: SSH ready {cold['marks']['ssh_ready'] - cold['marks']['domain_started']:.1f} s after the domain "
          f"started; time to the first command, cold / warm: {ratio:.1f}x")
    for label, result in rows:
        print(f"phases ({label}): " + " ".join(f"{k}={v:g}" for k, v in result["phases"].items()))


def parallel_table(runs: Path) -> None:
    print(f"\n{len(PARALLEL_SET)} scenarios ({', '.join(PARALLEL_SET)}), warm starts")
    print(f"{'jobs':<6}{'wall':>9}  result")
    walls = {}
    for jobs in (1, 2):
        wall, code, output = lab_run([*PARALLEL_SET, "-j", str(jobs)], runs)
        walls[jobs] = wall
        print(f"-j {jobs:<3}{wall:>8.1f}s  exit {code}: {output.strip().splitlines()[-1]}")
    print(f"speed-up with -j 2: {walls[1] / walls[2]:.2f}x on {os.cpu_count()} cores")


def remote_table(runs: Path) -> None:
    script = str(Path(__file__).parent / "loopback-remote.sh")
    home = str(Config.from_env().state_dir / "loopback-remote")  # stable: its KVM probe verdict is cached
    uri = subprocess.run([script, home], capture_output=True, text=True, check=True).stdout.split()[-1]
    try:
        rows = [("here", single(["smoke", "--cold"], runs)),
                ("qemu+ssh", single(["smoke", "--cold"], runs, LAB_LIBVIRT_URI=uri))]
    finally:
        subprocess.run([script, "stop", home], check=False)
    print("\nsmoke, cold: libvirt here vs a remote libvirt host over qemu+ssh:// (loopback sshd)")
    print(f"{'libvirt':<10}{'SSH ready':>10}{'1st cmd':>9}{'whole':>8}  phases")
    for label, result in rows:
        phases = " ".join(f"{k}={v:g}" for k, v in result["phases"].items())
        print(f"{label:<10}{result['marks']['ssh_ready']:>10.1f}{result['to_first_command']:>9.1f}"
              f"{result['wall_seconds']:>8.1f}  {phases}")


def atomic_table(runs: Path) -> None:
    print("\nlab-atomic (firmware + GRUB boot, LVM, xfs root)")
    if os.environ.get("BENCH_BUILD") == "1":
        start = time.monotonic()
        proc = subprocess.run([*LAB, "images", "build", "lab-atomic"], capture_output=True, text=True, check=False)
        print(f"cold build: {time.monotonic() - start:.1f} s (exit {proc.returncode})")
    else:
        print("cold build: not measured (BENCH_BUILD=1 rebuilds the image and times it)")
    single(["atomic-host"], runs)  # makes sure a saved guest exists
    warm = single(["atomic-host"], runs)
    print(f"warm: first command {warm['to_first_command']:.1f} s after `lab run` (start: {warm['start']}); "
          f"whole scenario {warm['wall_seconds']:.1f} s")


ANALYZE = "systemd-analyze 2>/dev/null | head -n 1 | sed 's/^Startup finished in //'"


def boot(image: str, cold: bool, runs: Path) -> dict[str, Any]:
    """One run of `image` that reboots its guest once: seconds to the first command, to ready after the
    reboot, and systemd-analyze's line for each boot."""
    seen: dict[str, Any] = {}

    def body(lab: ScenarioContext) -> None:
        vm = lab.machine
        seen["first boot"] = vm.succeed(ANALYZE).strip() or "(restored: no boot)"
        start = time.monotonic()
        vm.reboot()
        seen["reboot"] = time.monotonic() - start
        seen["after reboot"] = vm.succeed(ANALYZE).strip()

    spec = declare("bench-boot", "boot timings", body, image=image)
    os.environ["LAB_RUNS_DIR"] = str(runs)
    run = Run(Config.from_env(), RunRequest(spec, {}, image=image, cold=cold), Log(None))
    with run.session() as ctx:
        body(ctx)
    result: dict[str, Any] = json.loads((run.artifacts / "result.json").read_text())  # type: ignore[operator]
    marks = result["marks"]
    seen["first command"] = marks["ssh_ready"] - marks["image_ready"]
    seen["start"] = result["start"]
    return seen


def boot_table(runs: Path) -> None:
    images = os.environ.get("BENCH_IMAGES", "lab-bookworm lab-atomic lab-ostree").split()
    rows = []
    for image in images:
        boot(image, False, runs)  # makes sure a saved guest exists
        rows += [(image, "cold", boot(image, True, runs)), (image, "warm", boot(image, False, runs))]
    print("\nboots: seconds from the image being ready to the first command, and for a reboot to be ready "
          "(TCG or KVM as the run chose); systemd-analyze of each boot")
    print(f"{'image':<14}{'start':<6}{'1st cmd':>9}{'reboot':>9}  first boot / after the reboot")
    for image, label, seen in rows:
        print(f"{image:<14}{label:<6}{seen['first command']:>9.1f}{seen['reboot']:>9.1f}  {seen['first boot']}")
        print(f"{'':<38}{seen['after reboot']}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        boot_table(Path(tmp))
        atomic_table(Path(tmp))
        start_table(Path(tmp))
        parallel_table(Path(tmp))
        remote_table(Path(tmp))


if __name__ == "__main__":
    main()
