"""The lab core on real guests: `smoke` end to end, and a guest that never answers."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.base.config import Config
from lab.base.retry import wait_until
from lab.virt.cleanup import inventory
from lab.virt.hypervisor import connect
from lab.virt.storage import Pool

pytestmark = pytest.mark.vm
LAB = [sys.executable, "-m", "lab.doors.cli"]


def _lab(args: list[str], runs: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LAB, *args], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "LAB_RUNS_DIR": str(runs), **env}, check=False)


def _result(runs: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((runs / "latest" / "result.json").read_text())
    return data


def _leftovers(run_id: str) -> list[str]:
    config = Config.from_env()
    pool = Pool(connect(config.libvirt_uri), config.pool_name, config.pool_dir)
    found = inventory(pool.conn, pool).get(run_id)
    return [] if found is None else [d.name() for d in found.domains] + found.volumes


def test_smoke_scenario_passes_and_leaves_nothing(tmp_path: Path) -> None:
    proc = _lab(["run", "smoke", "--cold", "--set", "reboots=0"], tmp_path)  # the warm test below reboots
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = _result(tmp_path)
    assert result["status"] == "passed"
    assert result["start"] == "cold"
    assert [s["status"] for s in result["steps"]] == ["passed"] * 3  # type: ignore[union-attr, index]
    run_dir = Path(str(result["artifacts"]))
    assert "Linux version" in (run_dir / "console.log").read_text(errors="replace")
    assert "$ lsblk -dbno SERIAL,SIZE" in (run_dir / "transcript.log").read_text()
    assert not (run_dir / "id_ed25519").exists(), "the run's private key outlived the run"
    assert _leftovers(str(result["run_id"])) == []


def test_a_second_run_restores_the_saved_guest(tmp_path: Path) -> None:
    for attempt, reboots in (("first", 0), ("second", 1)):  # a restored guest reboots, as most scenarios' do
        proc = _lab(["run", "smoke", "--set", f"reboots={reboots}"], tmp_path / attempt)
        assert proc.returncode == 0, proc.stderr[-4000:]
    first, second = _result(tmp_path / "first"), _result(tmp_path / "second")
    assert str(first["start"]).startswith("warm")  # this run saved the guest, or an earlier one did
    assert second["start"] == "warm"
    assert "restore" in second["phases"] and "boot" not in second["phases"]  # type: ignore[operator]
    assert [s["status"] for s in second["steps"]] == ["passed"] * 6  # type: ignore[union-attr, index]
    assert _leftovers(str(second["run_id"])) == []


def test_guest_that_never_answers_ssh_fails_with_console_tail(tmp_path: Path) -> None:
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "64M"], check=True)
    proc = _lab(["run", "smoke", "--image", str(blank)], tmp_path / "runs", LAB_BOOT_TIMEOUT="300")
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert "guest never answered SSH: its boot cannot go on" in proc.stderr  # at once, not at the limit
    assert "the boot is in: firmware" in proc.stderr
    assert "console (last 30 lines" in proc.stderr
    assert "No bootable device" in proc.stderr  # SeaBIOS, on the serial console
    assert "artifacts: " in proc.stderr
    assert "Traceback" not in proc.stderr
    result = _result(tmp_path / "runs")
    assert result["status"] == "error"
    transcript = (Path(str(result["artifacts"])) / "transcript.log").read_text()
    assert "could not collect journal.txt: vm1: its boot cannot go on" in transcript  # no SSH tried, no wait
    assert _leftovers(str(result["run_id"])) == []


def _start_and_wait_for_domain(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    config = Config.from_env()
    pool = Pool(connect(config.libvirt_uri), config.pool_name, config.pool_dir)
    run_id = secrets.token_hex(4)
    proc = subprocess.Popen([*LAB, "run", "smoke", "--run-id", run_id], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "LAB_RUNS_DIR": str(tmp_path)})

    def domain_defined(last: bool) -> bool | None:
        assert proc.poll() is None, "lab run ended before its VM started"
        found = inventory(pool.conn, pool).get(run_id)
        return True if found is not None and found.domains else None

    wait_until(domain_defined, what="the run's domain", timeout=600, interval=0.5)
    return proc, run_id


def test_sigterm_tears_the_run_down(tmp_path: Path) -> None:
    proc, run_id = _start_and_wait_for_domain(tmp_path)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert "stopped by signal SIGTERM" in output
    assert _leftovers(run_id) == []
    assert _result(tmp_path)["status"] == "error"


def test_kill_9_then_lab_cleanup_leaves_nothing(tmp_path: Path) -> None:
    proc, run_id = _start_and_wait_for_domain(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    cleanup = _lab(["cleanup"], tmp_path)
    assert cleanup.returncode == 0, cleanup.stderr
    # removed by this cleanup, or already by the reaping at the start of a parallel test's `lab run`
    assert _leftovers(run_id) == []


@pytest.mark.parametrize(("name", "code"), [("health-oops", 1), ("health-oops-expected", 0)])
def test_health_check_fails_a_kernel_call_trace_unless_declared(name: str, code: int, tmp_path: Path) -> None:
    proc = _lab(["run", name], tmp_path, LAB_SCENARIOS_DIR=str(Path(__file__).parent / "scenarios"))
    assert proc.returncode == code, proc.stderr[-3000:]
    health = _result(tmp_path)["health"]
    assert isinstance(health, dict)
    found = health["unexpected"] if code else health["expected"]
    assert any("kernel: Call Trace:" in hit["line"] for hit in found), health  # the journal's kernel lines
    assert not any("sudo" in hit["line"] for hit in found), health


@pytest.mark.parametrize(("name", "why"), [("poweroff-mid", "the guest stopped"),
                                         ("panic-mid", "the guest's kernel panicked (Kernel panic - not syncing")])
def test_a_guest_that_dies_mid_command_ends_the_run_at_once(name: str, why: str, tmp_path: Path) -> None:
    proc = _lab(["run", name], tmp_path, LAB_SCENARIOS_DIR=str(Path(__file__).parent / "scenarios"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert why in proc.stderr and "while running" in proc.stderr
    assert "console (last 30 lines" in proc.stderr
    result = _result(tmp_path)
    # the command was given 900 s; the run noticed within seconds (the guest's own shutdown included)
    assert result["phases"]["scenario"] < 60, result["phases"]  # type: ignore[index]
    assert _leftovers(str(result["run_id"])) == []


def test_a_full_cache_disk_stops_the_run_before_any_vm(tmp_path: Path) -> None:
    cache, pool = tmp_path / "cache", f"lab-test-full-{secrets.token_hex(3)}"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(cache)], check=True)
    try:
        proc = _lab(["run", "smoke"], tmp_path / "runs", LAB_CACHE_DIR=str(cache), LAB_POOL=pool)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert f"GiB free in storage pool '{pool}' ({cache / 'pool'}), 2.0 GiB wanted" in proc.stderr
        assert "Traceback" not in proc.stderr
        result = _result(tmp_path / "runs")
        assert result["status"] == "error" and "domain_started" not in result["marks"]  # type: ignore[operator]
    finally:
        conn = connect(Config.from_env().libvirt_uri)
        found = conn.storagePoolLookupByName(pool)
        found.destroy()
        found.undefine()
        subprocess.run(["umount", str(cache)], check=True)


def test_a_reboot_that_never_happens_is_caught_by_the_boot_id(tmp_path: Path) -> None:
    proc = _lab(["run", "reboot-stub"], tmp_path, LAB_SCENARIOS_DIR=str(Path(__file__).parent / "scenarios"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "the reboot never happened" in proc.stderr
    assert "console (last 30 lines" in proc.stderr


def test_readiness_waits_for_a_slow_cloud_init(tmp_path: Path) -> None:
    """A seed whose runcmd sleeps 10 s: the scenario's first command must already see its result."""
    templates = tmp_path / "cloudinit"
    shutil.copytree(Path(__file__).parent.parent / "cloudinit", templates)
    with (templates / "user-data.yaml").open("a") as user_data:
        user_data.write("runcmd:\n  - [sh, -c, 'sleep 10 && echo done > /run/lab-late']\n")
    proc = _lab(["run", "ready-after-runcmd", "--cold"], tmp_path / "runs",
                LAB_SCENARIOS_DIR=str(Path(__file__).parent / "scenarios"), LAB_CLOUDINIT_DIR=str(templates))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _result(tmp_path / "runs")["facts"] == {"late": "done"}


def test_a_reset_keeps_the_journal_of_the_boot_it_ended(tmp_path: Path) -> None:
    proc = _lab(["run", "reset-journal"], tmp_path, LAB_SCENARIOS_DIR=str(Path(__file__).parent / "scenarios"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    evidence = tmp_path / "latest" / "evidence"
    assert "lab-test[" in (evidence / "journal-boot-1.txt").read_text()  # journald's own line, read back
    assert "lab-test[" not in (evidence / "journal.txt").read_text()


def test_require_checks_fail_on_the_guests_state(tmp_path: Path) -> None:
    proc = _lab(["run", "require-verbs", "--report", str(tmp_path / "report")], tmp_path,
                LAB_SCENARIOS_DIR=str(Path(__file__).parent / "scenarios"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((tmp_path / "report" / "summary.json").read_text())["runs"]  # --report on one run too
    assert [(r["scenario"], r["status"]) for r in runs] == [("require-verbs", "passed")]
    facts = _result(tmp_path)["facts"]
    assert facts == {"mount": "vm1: /run is mounted from tmpfs tmpfs, expected /dev/vda1 (xfs)",
                     "unit": "vm1: unit ssh.service is active, expected inactive",
                     "absent": facts["absent"]}, facts  # type: ignore[index]
    assert str(facts["absent"]).startswith("vm1: /run/lab-there exists, expected none: drwx")  # type: ignore[index]
