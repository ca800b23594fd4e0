"""The libvirt connection, the accelerator choice, and lab domains.

KVM is used only where a probe proved it boots a guest: on a nested PVM
hypervisor `/dev/kvm` exists but stock kernels hang before printing anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import libvirt
import libvirt_qemu

from lab.base.config import Config, LibvirtHost
from lab.base.errors import HarnessError, LibvirtUnavailable, UsageError
from lab.virt.console import ConsoleStream, run_event_loop
from lab.virt.domain import LAB_NS, render_probe_xml
from lab.virt.storage import RUN_PREFIX

# Seen on the console once the kernel ran far enough to look for a root fs.
_PROBE_MARKERS = ("VFS: Unable to mount root", "Kernel panic")
KVM_PROBE_SECONDS = 25.0


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; the lab reports its own."""


def connect(uri: str) -> libvirt.virConnect:
    libvirt.registerErrorHandler(_quiet, None)
    if LibvirtHost.from_uri(uri) is not None:
        run_event_loop()  # a remote host's consoles are read as streams
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        hint = "start it with `make setup` (or `virtlogd -d && libvirtd -d` as root)"
        raise LibvirtUnavailable(f"cannot reach libvirt at {uri}: {exc.get_error_message()}; {hint}") from exc


@dataclass(frozen=True)
class LabDomain:
    """A lab-run domain as found in libvirt, with the run metadata it carries."""

    name: str
    run_id: str
    kept: bool
    dom: libvirt.virDomain
    owner: tuple[str, int] | None = None  # (host name, pid) of the process that made it


def lab_domains(conn: libvirt.virConnect) -> list[LabDomain]:
    found = []
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(RUN_PREFIX):
            continue
        try:
            root = ET.fromstring(dom.XMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # gone while we looked (e.g. auto-destroyed after its run was killed)
            raise
        run = root.find(f"metadata/{{{LAB_NS}}}run")
        run_id = run.get("id", "") if run is not None else ""
        kept = run is not None and run.get("kept") == "yes"
        pid = run.get("pid", "") if run is not None else ""
        owner = (run.get("host", ""), int(pid)) if run is not None and pid.isdigit() else None
        found.append(LabDomain(dom.name(), run_id, kept, dom, owner))
    return found


def reserve_vcpus(conn: libvirt.virConnect, state_dir: Path, run_id: str, wanted: int) -> int:
    """vCPUs for a new guest of run `run_id`: `wanted`, within the libvirt host's CPUs that running guests and
    other live runs' reservations leave free, at least 1 (under TCG a guest given more vCPUs than the host has
    free starves: RCU stalls, soft lockups). Recorded in state/vcpus/<run id> under a lock, so that two runs
    starting at once do not both take the whole host; `release_vcpus` (or the run's process ending) frees it."""
    directory = state_dir / "vcpus"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reserved = _live_reservations(directory)
        busy = sum(reserved.values())
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if dom.name().removeprefix(RUN_PREFIX).split("-")[0] in reserved:
                continue  # counted in its run's reservation
            try:
                busy += int(dom.info()[3])
            except libvirt.libvirtError:
                continue  # gone while we looked
        given = max(1, min(wanted, int(conn.getInfo()[2]) - busy))
        mine = directory / run_id
        (directory / f".{run_id}.tmp").write_text(f"{os.getpid()} {reserved.get(run_id, 0) + given}\n")
        (directory / f".{run_id}.tmp").replace(mine)
        return given


def release_vcpus(state_dir: Path, run_id: str) -> None:
    (state_dir / "vcpus" / run_id).unlink(missing_ok=True)


def _live_reservations(directory: Path) -> dict[str, int]:
    """vCPUs reserved by run id, of runs whose process is alive; a dead run's file is removed."""
    found = {}
    for path in directory.iterdir():
        if path.name.startswith("."):
            continue
        try:
            pid, count = (int(field) for field in path.read_text().split())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass  # alive, another user's
        found[path.name] = count
    return found


def create_domain(conn: libvirt.virConnect, xml: str, flags: int,
                  stream_console_to: Path | None = None) -> tuple[libvirt.virDomain, ConsoleStream | None]:
    """Start a domain. With `stream_console_to`, its pty console is copied into that local file from
    the first byte: the domain starts paused and runs once the stream is open."""
    if stream_console_to is None:
        return conn.createXML(xml, flags), None
    dom = conn.createXML(xml, flags | libvirt.VIR_DOMAIN_START_PAUSED)
    try:
        stream = ConsoleStream.to_file(conn, dom, stream_console_to)
        dom.resume()
    except BaseException:
        destroy_domain(dom)
        raise
    return dom, stream


_FORWARD = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+22\b")


def forwarded_ssh_port(dom: libvirt.virDomain) -> int:
    """The host port QEMU bound for the guest's SSH. The lab asks for port 0, so choosing and binding the
    port is one step of QEMU's (no window for another process to take it); QEMU's `info usernet` tells it."""
    try:
        text = libvirt_qemu.qemuMonitorCommand(dom, "info usernet", libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    except libvirt.libvirtError as exc:
        raise HarnessError(f"cannot ask QEMU which port it forwards to SSH: {exc.get_error_message()}") from exc
    match = _FORWARD.search(text)
    if match is None:
        raise HarnessError(f"QEMU forwards no port to the guest's SSH (info usernet: {text.strip()[:200]!r})")
    return int(match.group(1))


def destroy_domain(dom: libvirt.virDomain) -> None:
    try:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise


def kvm_available(conn: libvirt.virConnect) -> bool:
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
    except libvirt.libvirtError:
        return False
    return Path("/dev/kvm").exists() or not conn.getURI().startswith("qemu:///")


class AccelProbe:
    """Decides "kvm" or "tcg" for a libvirt host, caching the verdict.

    The probe boots the image's kernel under KVM with no root disk: a kernel
    that runs reaches "VFS: Unable to mount root" within seconds; one stuck on
    a broken hypervisor prints nothing.
    """

    def __init__(self, conn: libvirt.virConnect, config: Config) -> None:
        self.conn, self.config = conn, config
        self.cache_file = config.state_dir / "accel.json"
        self.reason = ""

    def choose(self, kernel: Callable[[], str | None], run_id: str) -> str:
        """"kvm" or "tcg"; `self.reason` says why."""
        if self.config.accel in ("kvm", "tcg"):
            self.reason = f"LAB_ACCEL={self.config.accel}"
            return self.config.accel
        if self.config.accel != "auto":
            raise UsageError(f"LAB_ACCEL must be kvm, tcg or auto, not {self.config.accel!r}")
        if not kvm_available(self.conn):
            self.reason = "libvirt offers no KVM on this host"
            return "tcg"
        key = self._host_key()
        cached = self._load().get(key)
        if isinstance(cached, dict) and cached.get("verdict") in ("kvm", "tcg"):
            self.reason = f"{cached.get('reason')}; cached in {self.cache_file}, delete it to probe again"
            return str(cached["verdict"])
        kernel_path = kernel()
        if kernel_path is None:
            self.reason = "no kernel at hand to probe KVM with"
            return "tcg"
        try:
            verdict = "kvm" if self._probe(kernel_path, run_id) else "tcg"
            self.reason = "a KVM probe booted a kernel" if verdict == "kvm" else \
                f"a KVM probe's kernel printed nothing in {KVM_PROBE_SECONDS:.0f} s (broken nested hypervisor?)"
        except libvirt.libvirtError as exc:
            verdict = "tcg"
            self.reason = f"KVM refused to start a guest ({exc.get_error_message().splitlines()[-1]})"
        self._store(key, {"verdict": verdict, "reason": self.reason})
        return verdict

    def _host_key(self) -> str:
        return f"{self.conn.getURI()}|{self.conn.getHostname()}|{platform.release()}|{self.conn.getVersion()}"

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _store(self, key: str, verdict: dict[str, str]) -> None:
        data = self._load()
        data[key] = verdict
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        self.cache_file.write_text(json.dumps(data, indent=2))

    def _probe(self, kernel_path: str, run_id: str) -> bool:
        console = self.config.state_dir / f"{RUN_PREFIX}{run_id}-kvm-probe.log"
        console.unlink(missing_ok=True)
        remote = self.config.libvirt_host is not None
        xml = render_probe_xml(f"{RUN_PREFIX}{run_id}-kvm-probe", kernel_path, None if remote else str(console))
        dom, stream = create_domain(self.conn, xml, libvirt.VIR_DOMAIN_START_AUTODESTROY, console if remote else None)
        try:
            deadline = time.monotonic() + KVM_PROBE_SECONDS
            while time.monotonic() < deadline:
                text = console.read_text(errors="replace") if console.exists() else ""
                if any(marker in text for marker in _PROBE_MARKERS):
                    return True
                time.sleep(0.5)
            return False
        finally:
            destroy_domain(dom)
            if stream:
                stream.stop()
            console.unlink(missing_ok=True)


def require_lab_domain(conn: libvirt.virConnect, run_id: str) -> list[LabDomain]:
    matches = [d for d in lab_domains(conn) if d.run_id == run_id or d.name.startswith(f"{RUN_PREFIX}{run_id}")]
    if not matches:
        raise UsageError(f"no lab VM for run {run_id!r}; `lab cleanup --list` shows what exists")
    return matches


