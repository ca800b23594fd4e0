"""Finding and removing what lab runs left in libvirt.

Every domain and volume a run creates is named `lab-run-<run id>-...`. A live
run holds an flock on `state/run-<run id>.lock`, and its domains name the process
that made them (host, pid); a run whose lock nobody holds and whose process is
gone is dead, and its objects are orphans. (The process check protects runs from
a reaper with another state directory, e.g. another LAB_CACHE_DIR.) Kept runs (`--keep`) are marked in their
domain's metadata and are removed only when asked for by id or with --all.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from lab.base.errors import UsageError
from lab.base.log import Log
from lab.virt.hypervisor import destroy_domain, lab_domains
from lab.virt.storage import RUN_PREFIX, Pool

_RUN_ID = re.compile(rf"^{RUN_PREFIX}([0-9a-f]+)-")


class RunLock:
    """Held for the whole life of a run; its absence marks the run as dead."""

    def __init__(self, state_dir: Path, run_id: str) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / f"run-{run_id}.lock"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise UsageError(f"run {run_id} is already running (lock {self.path})") from None
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self._fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def run_alive(state_dir: Path, run_id: str) -> bool:
    path = state_dir / f"run-{run_id}.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass
class RunObjects:
    run_id: str
    domains: list[libvirt.virDomain] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    kept: bool = False
    owners: set[tuple[str, int]] = field(default_factory=set)  # (host, pid) of the processes that made it

    def owner_alive(self) -> bool:
        """Whether a process that made this run's domains still lives (checked on this host only)."""
        return any(host == socket.gethostname() and _pid_alive(pid) for host, pid in self.owners)


def inventory(conn: libvirt.virConnect, pool: Pool) -> dict[str, RunObjects]:
    runs: dict[str, RunObjects] = {}
    for found in lab_domains(conn):
        match = _RUN_ID.match(found.name)
        run_id = found.run_id or (match.group(1) if match else found.name)
        entry = runs.setdefault(run_id, RunObjects(run_id))
        entry.domains.append(found.dom)
        entry.kept = entry.kept or found.kept
        if found.owner:
            entry.owners.add(found.owner)
    for name in pool.names():
        match = _RUN_ID.match(name)
        if match:
            runs.setdefault(match.group(1), RunObjects(match.group(1))).volumes.append(name)
    return runs


def remove_run(objects: RunObjects, pool: Pool, log: Log) -> list[str]:
    """Remove every object of one run; never raises, logs what it could not remove."""
    failures = []
    for dom in objects.domains:
        try:
            destroy_domain(dom)
        except libvirt.libvirtError as exc:
            failures.append(f"domain {dom.name()}: {exc.get_error_message()}")
    for name in objects.volumes:
        try:
            pool.delete(name)
        except libvirt.libvirtError as exc:
            failures.append(f"volume {name}: {exc.get_error_message()}")
    for failure in failures:
        log.warning(f"cleanup of run {objects.run_id}: could not remove {failure}")
    return failures


def reap(conn: libvirt.virConnect, pool: Pool, state_dir: Path, log: Log, *,
         run_ids: set[str] | None = None, include_kept: bool = False) -> list[RunObjects]:
    """Remove the objects of dead runs (or of the named runs); returns what was reaped."""
    reaped = []
    for run_id, objects in sorted(inventory(conn, pool).items()):
        named = run_ids is not None and run_id in run_ids
        if run_ids is not None and not named:
            continue
        alive = run_alive(state_dir, run_id) or objects.owner_alive()
        if not named and (alive or (objects.kept and not include_kept)):
            continue
        remove_run(objects, pool, log)
        (state_dir / f"run-{run_id}.lock").unlink(missing_ok=True)
        reaped.append(objects)
    return reaped
