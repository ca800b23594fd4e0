"""Lifecycle and cleanup against libvirt's in-memory test:///default driver."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lab.base.config import Config
from lab.base.errors import BootTimeout
from lab.base.log import Log
from lab.doors import cli
from lab.image.store import ImageCache
from lab.machine import Machine
from lab.machine.shell import Timeouts
from lab.machine.ssh import KeyPair, SshSession
from lab.virt.cleanup import RunLock, inventory, reap, run_alive
from lab.virt.domain import DiskSpec, DomainSpec
from lab.virt.hypervisor import connect, lab_domains, release_vcpus, reserve_vcpus
from lab.virt.storage import Pool, run_prefix

libvirt = pytest.importorskip("libvirt")


@pytest.fixture
def pool(tmp_path: Path) -> Pool:
    conn = connect("test:///default")
    return Pool(conn, f"lab-test-{secrets.token_hex(3)}", tmp_path / "pool")


def _machine(pool: Pool, run_id: str, tmp_path: Path, owner: dict[str, str] | None = None) -> Machine:
    prefix = run_prefix(run_id)
    disk = pool.create_blank(f"{prefix}vm1-root.qcow2", 1 << 30)
    spec = DomainSpec(name=f"{prefix}vm1", run_id=run_id, domain_type="test", memory_mib=128, vcpus=1,
                      disks=(DiskSpec(disk.path(), "lab-root"),), console_path=str(tmp_path / "c.log"),
                      ssh_port=1, metadata=owner or {})
    key = KeyPair.generate(tmp_path / f"key-{run_id}", "test")
    # The test driver has no AUTODESTROY; real runs use it.
    return Machine(spec, pool.conn, SshSession("127.0.0.1", 1, "lab", key), Log(terminal=False),
                   Timeouts(scale=1, boot=1), autodestroy=False)


def test_machine_start_and_destroy_leave_no_domain(pool: Pool, tmp_path: Path) -> None:
    machine = _machine(pool, secrets.token_hex(4), tmp_path)
    machine.start()
    assert machine.is_running()
    assert machine.spec.name in [d.name for d in lab_domains(pool.conn)]
    machine.destroy()
    assert machine.spec.name not in [d.name for d in lab_domains(pool.conn)]


def test_inventory_groups_domains_and_volumes_by_run_id(pool: Pool, tmp_path: Path) -> None:
    run_id = secrets.token_hex(4)
    machine = _machine(pool, run_id, tmp_path)
    machine.start()
    pool.create_blank(f"{run_prefix(run_id)}vm1-data1.qcow2", 1 << 20)
    pool.create_blank("image-cached-base.qcow2", 1 << 20)
    found = inventory(pool.conn, pool)[run_id]
    assert [d.name() for d in found.domains] == [machine.spec.name]
    assert sorted(found.volumes) == [f"{run_prefix(run_id)}vm1-data1.qcow2", f"{run_prefix(run_id)}vm1-root.qcow2"]
    assert all(not name.startswith("lab-run-") for name in pool.names() if "cached" in name)
    machine.destroy()


def test_reap_removes_dead_runs_only(pool: Pool, tmp_path: Path) -> None:
    state = tmp_path / "state"
    live, dead, kept = (secrets.token_hex(4) for _ in range(3))
    machines = {run_id: _machine(pool, run_id, tmp_path) for run_id in (live, dead, kept)}
    for machine in machines.values():
        machine.start()
    lock = RunLock(state, live)
    machines[kept].domain.mark({"id": kept, "kept": "yes"})

    reaped = {r.run_id for r in reap(pool.conn, pool, state, Log(terminal=False))}
    assert dead in reaped and live not in reaped and kept not in reaped
    remaining = inventory(pool.conn, pool)
    assert dead not in remaining and live in remaining and kept in remaining

    assert kept in {r.run_id for r in reap(pool.conn, pool, state, Log(terminal=False), include_kept=True)}
    assert run_alive(state, live)
    lock.release()
    assert not run_alive(state, live)
    assert live in {r.run_id for r in reap(pool.conn, pool, state, Log(terminal=False))}
    assert not any(run_id in inventory(pool.conn, pool) for run_id in (live, dead, kept))


def test_a_run_whose_process_lives_is_not_reaped_from_another_state_dir(pool: Pool, tmp_path: Path) -> None:
    """A reaper with another state directory (another LAB_CACHE_DIR) sees no lock; the domain's
    owner process, alive on this host, still keeps the run."""
    ours, gone = secrets.token_hex(4), secrets.token_hex(4)
    _machine(pool, ours, tmp_path, {"host": socket.gethostname(), "pid": str(os.getpid())}).start()
    _machine(pool, gone, tmp_path, {"host": socket.gethostname(), "pid": str(_exited_pid())}).start()
    reaped = {r.run_id for r in reap(pool.conn, pool, tmp_path / "other-state", Log(terminal=False))}
    assert gone in reaped and ours not in reaped
    quiet = Log(terminal=False)
    assert [r.run_id for r in reap(pool.conn, pool, tmp_path / "other-state", quiet, run_ids={ours})] == [ours]


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])  # a process that has come and gone
    proc.wait()
    return proc.pid


def test_destroy_by_run_id_removes_a_live_run(pool: Pool, tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_id = secrets.token_hex(4)
    _machine(pool, run_id, tmp_path).start()
    lock = RunLock(state, run_id)
    reaped = reap(pool.conn, pool, state, Log(terminal=False), run_ids={run_id})
    assert [r.run_id for r in reaped] == [run_id]
    assert run_id not in inventory(pool.conn, pool)
    lock.release()


def test_prune_removes_only_stale_image_versions(pool: Pool, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    cache = ImageCache(Config.from_env(), pool, Log(terminal=False))
    current = cache.recipe("lab-atomic").image().disk_volume
    kept = {current, "image-file-0123456789abcdef.qcow2", f"{run_prefix('abcd1234')}vm1-root.qcow2"}
    for name in (*kept, "image-lab-atomic-000000000000.qcow2"):
        pool.create_blank(name, 1 << 20)
    assert cache.prune() == ["image-lab-atomic-000000000000.qcow2"]
    assert set(pool.names()) == kept


def _cache_pool(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> Pool:
    monkeypatch.delenv("LAB_POOL", raising=False)
    monkeypatch.setenv("LAB_CACHE_DIR", str(cache_dir))
    config = Config.from_env()
    return Pool(connect("test:///default"), config.pool_name, config.pool_dir)


def test_a_second_cache_directory_never_sees_the_first_ones_volumes(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _cache_pool(monkeypatch, tmp_path / "a"), _cache_pool(monkeypatch, tmp_path / "b")
    assert first.name != second.name
    first.create_blank("image-lab-bookworm-000000000000.qcow2", 1 << 20)
    made = second.create_blank("image-lab-bookworm-111111111111.qcow2", 1 << 20)
    assert second.names() == ["image-lab-bookworm-111111111111.qcow2"]
    assert first.names() == ["image-lab-bookworm-000000000000.qcow2"]
    assert Path(made.path()).parent == tmp_path / "b" / "pool"


def test_a_pool_name_that_lives_in_another_directory_is_refused(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from lab.doors.cli import main

    name = f"lab-test-{secrets.token_hex(3)}"
    old = Pool(connect("test:///default"), name, tmp_path / "old" / "pool")  # kept open: the driver's state lives
    old.names()                                                           # as long as a connection does
    for key, value in (("LAB_POOL", name), ("LAB_CACHE_DIR", str(tmp_path / "new")),
                       ("LAB_LIBVIRT_URI", "test:///default"), ("LAB_RUNS_DIR", str(tmp_path / "runs"))):
        monkeypatch.setenv(key, value)
    assert main(["run", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{tmp_path}/old/pool" in err and f"{tmp_path}/new/pool" in err and "LAB_POOL" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "new").exists()


def test_pools_of_cache_directories_that_are_gone_are_forgotten(tmp_path: Path) -> None:
    from lab.virt.storage import forget_gone_pools

    conn = connect("test:///default")
    kept, gone = (Pool(conn, f"lab-test-{secrets.token_hex(3)}", tmp_path / d / "pool") for d in ("kept", "gone"))
    for pool in (kept, gone):
        pool.directory.mkdir(parents=True)  # the test driver makes no directories
        pool.names()
    gone.directory.rmdir()
    forgotten = forget_gone_pools(conn, "lab-test")
    assert gone.name in forgotten and kept.name not in forgotten
    assert kept.name in conn.listStoragePools() and gone.name not in conn.listStoragePools()


def test_a_guest_gets_only_the_cpus_other_guests_and_starting_runs_leave_free(tmp_path: Path) -> None:
    """libvirt's test driver: a host of 16 CPUs running one 2-vCPU domain. Two runs starting at once
    (neither guest running yet) must not both take the 14 free CPUs."""
    conn = libvirt.open("test:///default")
    assert reserve_vcpus(conn, tmp_path, "aaaa1111", 16) == 14
    assert reserve_vcpus(conn, tmp_path, "bbbb2222", 4) == 1  # none left: still at least one
    release_vcpus(tmp_path, "aaaa1111")
    assert reserve_vcpus(conn, tmp_path, "cccc3333", 4) == 4
    (tmp_path / "vcpus" / "dddd4444").write_text("999999999 12\n")  # a run that died without releasing
    assert reserve_vcpus(conn, tmp_path, "eeee5555", 8) == 8
    assert not (tmp_path / "vcpus" / "dddd4444").exists()


def _stop_outside_the_lab(machine: Machine, last_console_line: str) -> None:
    """The guest's kernel prints its last line and QEMU ends (on_reboot is destroy)."""
    with Path(machine.spec.console_path).open("a") as console:
        console.write(f"[   42.000000] {last_console_line}\n")
    machine.domain.conn.lookupByName(machine.spec.name).destroy()


def test_a_guest_whose_kernel_restarted_is_powered_on_again(pool: Pool, tmp_path: Path) -> None:
    machine = _machine(pool, secrets.token_hex(4), tmp_path)
    machine.start()
    _stop_outside_the_lab(machine, "reboot: Restarting system")
    assert machine.is_running()
    assert machine.domain.conn.lookupByName(machine.spec.name).isActive()
    machine.destroy()


def test_a_guest_that_powered_off_stays_off(pool: Pool, tmp_path: Path) -> None:
    machine = _machine(pool, secrets.token_hex(4), tmp_path)
    machine.start()
    _stop_outside_the_lab(machine, "reboot: Power down")
    assert not machine.is_running()
    assert machine.spec.name not in [d.name for d in lab_domains(pool.conn)]
    machine.destroy()


def test_an_earlier_power_on_s_restart_does_not_count(pool: Pool, tmp_path: Path) -> None:
    machine = _machine(pool, secrets.token_hex(4), tmp_path)
    machine.start()
    _stop_outside_the_lab(machine, "reboot: Restarting system")
    assert machine.is_running()  # powered on again: its console from here on is a new power-on's
    _stop_outside_the_lab(machine, "reboot: Power down")
    assert not machine.is_running()
    machine.destroy()


def test_a_kept_guest_reboots_in_place(pool: Pool, tmp_path: Path) -> None:
    machine = _machine(pool, secrets.token_hex(4), tmp_path)
    machine.start()
    dom = pool.conn.lookupByName(machine.spec.name)
    assert "<on_reboot>destroy</on_reboot>" in dom.XMLDesc()  # the lab powers it on again
    machine.hand_over()
    assert "<on_reboot>restart</on_reboot>" in dom.XMLDesc()  # no lab is there to do it
    machine.destroy()


def test_a_reboot_into_emergency_mode_fails_at_once(pool: Pool, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The reboot's wait reads the console: a boot that stopped in emergency mode fails when it shows, with the
    line, not when the wait's limit runs out (partition-v1 without lab-lvm-activate waited 300 s)."""
    machine = _machine(pool, secrets.token_hex(4), tmp_path)
    machine.start()
    monkeypatch.setattr(machine, "_keep_journal", lambda: None)
    monkeypatch.setattr(machine, "_systemctl_soon", lambda verb: Path(machine.spec.console_path).write_text(
        "[    0.000000] Linux version 6.1.0\n[  95.0] You are in emergency mode. After logging in, type ...\n"))
    started = time.monotonic()
    with pytest.raises(BootTimeout, match="never came back from the reboot: its boot cannot go on, the console "
                                          "shows 'You are in emergency mode"):
        machine.reboot(timeout=60)
    assert time.monotonic() - started < 10
    machine.destroy()


def test_lab_cleanup_says_what_it_removed_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_LIBVIRT_URI", "test:///default")
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    config = Config.from_env()
    pool = Pool(connect("test:///default"), config.pool_name, config.pool_dir)
    pool.directory.mkdir(parents=True)  # the test driver makes no directories, and cleanup forgets such pools
    dead = secrets.token_hex(4)
    _machine(pool, dead, tmp_path).start()
    assert cli.main(["cleanup", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    removed = {run["run_id"]: run for run in said["removed"]}
    assert removed[dead]["domains"] == 1 and removed[dead]["volumes"] == [f"{run_prefix(dead)}vm1-root.qcow2"]
    assert dead not in inventory(pool.conn, pool)
