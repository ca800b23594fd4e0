"""One scenario run, from image to cleanup, whatever happens in between."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import libvirt

from lab import cloudinit, console
from lab.artifacts import RunDir
from lab.cleanup import RunLock, RunObjects, reap, remove_run
from lab.config import Config
from lab.domain import LAB_NS, DiskSpec, DomainSpec, KernelBoot
from lab.errors import HarnessError, Interrupted, LabError, ScenarioFailed
from lab.hypervisor import AccelProbe, connect
from lab.image import DEFAULT_IMAGE, Image, ImageCatalog, load_recipes, probe_disk_image
from lab.log import Log
from lab.machine import Machine, Timeouts
from lab.scenario import Scenario
from lab.ssh import KeyPair, SshSession
from lab.storage import Pool, run_prefix

MACHINE = "vm1"


@dataclass(frozen=True)
class RunRequest:
    scenario: Scenario
    params: dict[str, Any]
    image: str | None = None  # a recipe name or a path to a disk image
    keep: bool = False


class ScenarioContext:
    """What a scenario function gets: its machine, parameters and steps."""

    def __init__(self, machine: Machine, params: dict[str, Any], run_dir: RunDir, log: Log) -> None:
        self.machine, self.params, self.run_dir, self.log = machine, params, run_dir, log
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

    def record(self, key: str, value: Any) -> None:
        """A fact for result.json (a size reached, a message seen, a timing)."""
        self.facts[key] = value


def resolve_image_ref(request: RunRequest, catalog_names: set[str]) -> str:
    ref = request.image or request.scenario.image or DEFAULT_IMAGE
    if ref not in catalog_names:
        probe_disk_image(Path(ref))  # fails with a one-line reason before anything is created
    return ref


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Run:
    def __init__(self, config: Config, request: RunRequest, log: Log) -> None:
        self.config, self.request, self.log = config, request, log
        self.run_id = secrets.token_hex(4)
        self.t0 = time.monotonic()
        self.marks: dict[str, float] = {}
        self.phases: dict[str, float] = {}
        self.machine: Machine | None = None
        self.ctx: ScenarioContext | None = None
        self.volumes: list[str] = []

    # --- bookkeeping -----------------------------------------------------

    def mark(self, name: str) -> None:
        self.marks[name] = round(time.monotonic() - self.t0, 2)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - start, 2)

    # --- the run ---------------------------------------------------------

    def execute(self) -> int:
        image_ref = resolve_image_ref(self.request, set(load_recipes(self.config.images_dir)))
        conn = connect(self.config.libvirt_uri)
        pool = Pool(conn, self.config.pool_name, self.config.pool_dir)
        catalog = ImageCatalog(self.config, pool, self.log)
        lock = RunLock(self.config.state_dir, self.run_id)
        reaped = reap(conn, pool, self.config.state_dir, self.log)
        if reaped:
            self.log.info(f"removed what {len(reaped)} dead run(s) left: {', '.join(r.run_id for r in reaped)}")
        run_dir = RunDir(self.config.runs_dir, self.request.scenario.name)
        self.log.open_transcript(run_dir.transcript)
        result: dict[str, Any] = {
            "run_id": self.run_id, "scenario": self.request.scenario.name, "image": image_ref,
            "params": self.request.params, "status": "error", "artifacts": str(run_dir.path),
        }
        restore = _trap_signals()
        code = 2
        try:
            code = self._guarded(conn, pool, catalog, image_ref, run_dir, result)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut cleanup short
            self._finish(conn, pool, run_dir, result)
            restore()
            lock.release()
            self.log.close()
        return code

    def _guarded(self, conn: libvirt.virConnect, pool: Pool, catalog: ImageCatalog, image_ref: str,
                 run_dir: RunDir, result: dict[str, Any]) -> int:
        try:
            self._boot_and_run(conn, pool, catalog, image_ref, run_dir, result)
        except (ScenarioFailed, AssertionError) as exc:
            result.update(status="failed", failure=self._describe(exc, run_dir))
            self.log.info(f"FAILED {self.request.scenario.name}: {result['failure']}")
            return 1
        except (LabError, KeyboardInterrupt) as exc:
            error = Interrupted("interrupted by Ctrl-C") if isinstance(exc, KeyboardInterrupt) else exc
            result.update(status="error", failure=self._describe(error, run_dir))
            self.log.transcript(traceback.format_exc())
            self.log.info(f"ERROR {self.request.scenario.name}: {result['failure']}")
            return error.exit_code
        except Exception as exc:
            result.update(status="error", failure=self._describe(exc, run_dir))
            self.log.info(traceback.format_exc())  # a lab bug: the whole traceback
            self.log.info(f"ERROR {self.request.scenario.name}: {result['failure']}")
            return 2
        result["status"] = "passed"
        self.log.info(f"PASSED {self.request.scenario.name} in {time.monotonic() - self.t0:.1f} s "
                      f"(artifacts: {run_dir.path})")
        return 0

    def _boot_and_run(self, conn: libvirt.virConnect, pool: Pool, catalog: ImageCatalog, image_ref: str,
                      run_dir: RunDir, result: dict[str, Any]) -> None:
        scenario = self.request.scenario
        with self.phase("image"):
            image = catalog.ensure(image_ref) if image_ref in catalog.recipes() else \
                catalog.from_file(Path(image_ref))
        self.mark("image_ready")
        kernel = pool.lookup(image.kernel_volume) if image.kernel_volume else None
        probe = AccelProbe(conn, self.config)
        accel = probe.choose(kernel.path() if kernel else None, self.run_id)
        scale = self.config.timeout_factor * (self.config.tcg_timeout_factor if accel == "tcg" else 1.0)
        timeouts = Timeouts(scale=scale, boot=self.config.boot_timeout)
        result.update(accelerator=accel, accelerator_reason=probe.reason, timeout_scale=scale)
        self.log.info(f"run {self.run_id}: {scenario.name} on {image.name}")
        self.log.info(f"accelerator: {accel} ({probe.reason}); timeouts x{scale:g}")
        self.log.info(f"artifacts: {run_dir.path}")
        with self.phase("volumes"):
            spec = self._create_volumes(pool, image, accel, run_dir)
        key = KeyPair(run_dir.key, "")
        self.machine = Machine(spec, conn, SshSession("127.0.0.1", spec.ssh_port, image.login_user, key),
                               self.log, timeouts, autodestroy=not self.request.keep)
        with console.ConsoleWatcher(run_dir.console, self.t0) as watcher:
            with self.phase("start"):
                self.machine.start()
            self.mark("domain_started")
            with self.phase("boot"):
                self.machine.wait_for_boot()
            self.mark("ssh_ready")
        self.marks.update(watcher.seen)
        self.ctx = ScenarioContext(self.machine, self.request.params, run_dir, self.log)
        with self.phase("scenario"), _watchdog(self.machine, timeouts(scenario.timeout), self.log):
            scenario.func(self.ctx)

    def _create_volumes(self, pool: Pool, image: Image, accel: str, run_dir: RunDir) -> DomainSpec:
        prefix = f"{run_prefix(self.run_id)}{MACHINE}"
        key = KeyPair.generate(run_dir.key, f"lab-run-{self.run_id}")
        base = pool.lookup(image.disk_volume)
        if base is None:
            raise HarnessError(f"image volume {image.disk_volume} vanished from pool {pool.name}")
        disks = [DiskSpec(self._track(pool.create_overlay(f"{prefix}-root.qcow2", base, image.disk_format)),
                          "lab-root")]
        for disk in self.request.scenario.disks:
            disks.append(DiskSpec(self._track(pool.create_blank(f"{prefix}-{disk.serial}.qcow2", disk.bytes)),
                                  disk.serial))
        files = cloudinit.render_seed_files(self.config.cloudinit_dir, cloudinit.SeedInputs(
            hostname=MACHINE, instance_id=f"lab-{self.run_id}", user=image.login_user,
            ssh_public_key=key.public_line))
        seed = pool.upload_bytes(f"{prefix}-seed.iso", cloudinit.build_seed_iso(files))
        disks.append(DiskSpec(self._track(seed), "cidata", format="raw", readonly=True))
        kernel_boot = None
        if image.kernel_volume and image.initrd_volume:
            kernel_boot = KernelBoot(pool.lookup(image.kernel_volume).path(),  # type: ignore[union-attr]
                                     pool.lookup(image.initrd_volume).path(),  # type: ignore[union-attr]
                                     image.cmdline)
        scenario = self.request.scenario
        return DomainSpec(
            name=f"{prefix}", run_id=self.run_id, domain_type="kvm" if accel == "kvm" else "qemu",
            memory_mib=scenario.memory, vcpus=scenario.cpus, disks=tuple(disks),
            console_path=str(run_dir.console), ssh_port=free_port(), kernel_boot=kernel_boot,
            metadata={"pid": str(os.getpid()), "scenario": scenario.name, "host": socket.gethostname()},
        )

    def _track(self, volume: libvirt.virStorageVol) -> str:
        self.volumes.append(volume.name())
        return str(volume.path())

    # --- reporting and teardown ------------------------------------------

    def _describe(self, exc: BaseException, run_dir: RunDir) -> str:
        where = f"step {self.ctx.current_step!r}: " if self.ctx and self.ctx.current_step else ""
        text = f"{where}{exc}"
        if self.machine is not None:
            text += f"\n  console (last 30 lines of {run_dir.console}):\n"
            text += "\n".join(f"    {line}" for line in self.machine.console_tail(30).splitlines())
        frame = _scenario_frame(exc, self.request.scenario)
        if frame:
            text += f"\n  !!! at {frame}"
        return text + f"\n  artifacts: {run_dir.path}"

    def _finish(self, conn: libvirt.virConnect, pool: Pool, run_dir: RunDir, result: dict[str, Any]) -> None:
        kept = self.request.keep and self.machine is not None and self.machine.is_running()
        with self.phase("cleanup"):
            if kept:
                self._mark_kept(run_dir)
            else:
                objects = RunObjects(self.run_id, volumes=list(self.volumes))
                if self.machine is not None:
                    self.machine.destroy()
                remove_run(objects, pool, self.log)
                run_dir.key.unlink(missing_ok=True)
        result.update(
            kept=kept, phases=self.phases, marks=self.marks,
            steps=self.ctx.steps if self.ctx else [], facts=self.ctx.facts if self.ctx else {},
            wall_seconds=round(time.monotonic() - self.t0, 2),
        )
        run_dir.write_result(result)

    def _mark_kept(self, run_dir: RunDir) -> None:
        assert self.machine is not None and self.machine._dom is not None
        spec = self.machine.spec
        element = ET.Element("run", {"id": self.run_id, "kept": "yes", **spec.metadata})
        self.machine._dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ET.tostring(element, "unicode"),
                                      "lab", LAB_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self.machine.ssh.close()
        self.log.info(
            f"kept {spec.name}; enter it with:\n"
            f"  ssh -i {run_dir.key} -p {spec.ssh_port} -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null {self.machine.ssh.user}@127.0.0.1\n"
            f"remove it with: lab destroy {self.run_id}")


def _scenario_frame(exc: BaseException, scenario: Scenario) -> str:
    source = scenario.func.__code__.co_filename
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == source]
    return f"{Path(source).name}:{frames[-1].lineno}: {frames[-1].line}" if frames else ""


def _trap_signals() -> Any:
    """SIGTERM ends the run like Ctrl-C does: through the cleanup path."""

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


@contextmanager
def _watchdog(machine: Machine, limit: float, log: Log) -> Iterator[None]:
    """Past the scenario's time limit the guest is destroyed, so no command hangs on."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        log.warning(f"scenario exceeded its limit of {limit:.0f} s; destroying {machine.spec.name}")
        machine.destroy()

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except LabError as exc:
        if fired.is_set():
            raise HarnessError(f"scenario exceeded its time limit of {limit:.0f} s") from exc
        raise
    finally:
        timer.cancel()

