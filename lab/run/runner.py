"""One scenario run, from image to cleanup, whatever happens in between."""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from lab.base.artifacts import RunDir
from lab.base.config import Config
from lab.base.errors import Interrupted, LabError, RunFailed, ScenarioFailed, UsageError
from lab.base.log import Log
from lab.base.signals import ignore_sigterm, trap_signals
from lab.context import ScenarioContext
from lab.image.external import imported, not_imported, trust
from lab.image.store import Image, load_recipes, probe_disk_image
from lab.machine import Machine
from lab.machine.peers import PeerPlan, join
from lab.provision.prepare import Workbench
from lab.provision.provision import MachineRequest, Provisioner, free_port
from lab.run import bundle
from lab.run.diagnose import collect_failure_evidence
from lab.run.health import HealthFailed, check_health
from lab.run.page import write_page
from lab.run.record import Boot, RunResult
from lab.run.sit import SHELL, python_shell, wait_for_enter
from lab.run.starts import Starter
from lab.run.watchdog import watchdog
from lab.scenario import Node, Scenario
from lab.virt.cleanup import RunLock, inventory, reap
from lab.virt.domain import DiskSpec
from lab.virt.hypervisor import connect
from lab.virt.storage import RUN_FREE, Pool

RUN_ID = re.compile(r"[0-9a-f]{4,16}")


@dataclass(frozen=True)
class RunRequest:
    scenario: Scenario
    params: dict[str, Any]
    image: str | None = None  # a recipe name or a path to a disk image
    keep: bool = False
    run_id: str | None = None  # default: a random one
    cold: bool = False  # boot, instead of restoring a saved guest
    keep_on_failure: bool = False
    sit: bool = False  # a failed run waits before teardown, its guest up, for Enter or sit_timeout

    def flags(self) -> list[str]:
        """This request's options as `lab run` spells them (parallel runs start a `lab run` per scenario)."""
        return [flag for flag, on in (("--keep", self.keep), ("--keep-on-failure", self.keep_on_failure),
                                      ("--cold", self.cold), ("--sit", self.sit)) if on]


def resolve_image_ref(request: RunRequest, config: Config) -> str:
    """The image a run boots: a recipe's name, an imported image's name or a disk file's path. A
    reason it cannot be booted fails the run here, in one line, before anything is created."""
    ref = request.image or request.scenario.image or config.default_image
    if ref in load_recipes(config.images_dirs) or imported(config, ref):
        return ref
    reason = not_imported(config, ref)
    if reason:
        raise UsageError(reason)
    probe_disk_image(Path(ref))
    return ref


class Run:
    def __init__(self, config: Config, request: RunRequest, log: Log) -> None:
        self.config, self.request, self.log = config, request, log
        # how --sit waits, with a Python shell to offer (pytest lifts its capture around it)
        self.pause: Callable[[float, Callable[[], None]], str] = wait_for_enter
        self.run_id = request.run_id or secrets.token_hex(4)
        self.t0 = time.monotonic()
        self.marks: dict[str, float] = {}
        self.phases: dict[str, float] = {}
        self.machines: dict[str, Machine] = {}  # by host name, as they are made
        self.ctx: ScenarioContext | None = None
        self._provisioner: Provisioner | None = None
        self.artifacts: Path | None = None  # the run's directory, once made

    @property
    def machine(self) -> Machine | None:
        """The run's first machine (its only one, unless the scenario declares several)."""
        return next(iter(self.machines.values()), None)

    # --- bookkeeping -----------------------------------------------------

    def mark(self, name: str) -> None:
        self.marks[name] = round(time.monotonic() - self.t0, 2)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.monotonic() - start, 2)  # e.g. two saves

    # --- the run ---------------------------------------------------------

    def execute(self) -> int:
        """Run the scenario; returns the exit code (0 passed, 1 failed, 2 error, 130 interrupted)."""
        try:
            with self.session() as ctx:
                self.request.scenario.func(ctx)
        except RunFailed as exc:
            return exc.exit_code
        return 0

    @contextmanager
    def session(self) -> Iterator[ScenarioContext]:
        """The run around a body (the scenario, or a pytest test): boot or restore the machine, yield
        its context, check the guest's health, tear down. A run that does not pass, whatever failed
        (the body included), is written to result.json and raised as RunFailed."""
        image_ref = resolve_image_ref(self.request, self.config)
        conn = connect(self.config.libvirt_uri)
        pool = Pool(conn, self.config.pool_name, self.config.pool_dir).open()  # a pool elsewhere fails here
        lock = RunLock(self.config.state_dir, self.run_id)
        reaped = reap(conn, pool, self.config.state_dir, self.log)
        if reaped:
            self.log.info(f"removed what {len(reaped)} dead run(s) left: {', '.join(r.run_id for r in reaped)}")
        if self.run_id in inventory(conn, pool):
            lock.release()
            raise UsageError(f"run id {self.run_id} is taken by a kept run (lab destroy {self.run_id})")
        run_dir = RunDir(self.config.runs_dir, self.request.scenario.name)
        self.artifacts = run_dir.path
        self.log.open_transcript(run_dir.transcript)
        self.log.info(f"run {self.run_id}: {self.request.scenario.name} on {image_ref}; artifacts {run_dir.path}")
        bundle.record(run_dir.path, self.request.scenario, image_ref, self.config)
        result = RunResult(self.run_id, self.request.scenario.name, image_ref, self.request.params,
                           str(run_dir.path), stand_ins=[s.line() for s in self.request.scenario.stand_ins])
        restore = trap_signals()
        try:
            code = yield from self._guarded(conn, pool, image_ref, run_dir, result)
        finally:
            self._sit(run_dir, result)
            ignore_sigterm()  # a second signal must not cut cleanup short
            self._finish(run_dir, result)
            restore()
            lock.release()
            self.log.close()
        if code:
            raise RunFailed(code, result.failure)

    def _guarded(self, conn: libvirt.virConnect, pool: Pool, image_ref: str, run_dir: RunDir,
                 result: RunResult) -> Generator[ScenarioContext, None, int]:
        """Yields the context once the machine is up; returns the exit code, every error turned into one."""
        try:
            ctx = self._boot(conn, pool, image_ref, run_dir, result)
            assert self._provisioner is not None and self.machine is not None
            limit = self._provisioner.timeouts(self.request.scenario.timeout)
            with self.phase("scenario"), watchdog(list(self.machines.values()), limit, self.log):
                yield ctx
            with self.phase("health"):
                result.health = check_health(self.machines, run_dir, self.request.scenario.expected)
        except (ScenarioFailed, AssertionError) as exc:
            result.health = exc.health if isinstance(exc, HealthFailed) else result.health
            self._collect_evidence(run_dir, result)
            result.status, result.failure = "failed", self._describe(exc, run_dir)
            self.log.result(f"FAILED {self.request.scenario.name}: {result.failure}")
            return 1
        except (LabError, KeyboardInterrupt) as exc:
            error = Interrupted("interrupted by Ctrl-C") if isinstance(exc, KeyboardInterrupt) else exc
            if isinstance(error, Interrupted):
                result.interrupted = True
            else:
                self._collect_evidence(run_dir, result)
            result.status, result.failure = "error", self._describe(error, run_dir)
            self.log.transcript(traceback.format_exc())
            self.log.result(f"ERROR {self.request.scenario.name}: {result.failure}")
            return error.exit_code
        except Exception as exc:
            self._collect_evidence(run_dir, result)
            result.status, result.failure = "error", self._describe(exc, run_dir)
            self.log.transcript(traceback.format_exc())  # a lab bug: its traceback in the transcript
            self.log.result(f"ERROR {self.request.scenario.name}: {result.failure}")
            return 2
        result.status = "passed"
        self.log.result(f"PASSED {self.request.scenario.name} in {time.monotonic() - self.t0:.1f} s "
                        f"(artifacts: {run_dir.path})")
        return 0


    def _boot(self, conn: libvirt.virConnect, pool: Pool, image_ref: str, run_dir: RunDir,
              result: RunResult) -> ScenarioContext:
        scenario = self.request.scenario
        pool.require_free(RUN_FREE * len(scenario.nodes()), f"run {self.run_id}")

        def opened(provisioner: Provisioner) -> None:  # once, on first need: a build may need it first
            self._provisioner = provisioner
            result.accelerator, result.accelerator_reason = provisioner.accel, provisioner.accel_reason
            result.timeout_scale = provisioner.timeouts.scale

        bench = Workbench(conn, pool, self.config, self.log, self.run_id, run_dir.path, opened)
        with self.phase("image"):
            image = bench.image(image_ref)
        result.image_verified, result.image_trust = trust(self.config, image_ref)
        if not result.image_verified:
            self.log.warning(f"image {image_ref} is unverified: {result.image_trust}")
        self.mark("image_ready")
        provisioner = bench.provisioner()
        nodes = scenario.nodes()
        plan = PeerPlan.make(self.run_id, list(nodes), free_port()) if len(nodes) > 1 else None
        shared = provisioner.shared_disks(scenario.shared_disks)
        self.ctx = ScenarioContext(self.machines, self.request.params, run_dir, self.log, image.profile,
                                   tuple(s.component for s in scenario.stand_ins), self.t0)
        starter = Starter(self, provisioner)
        requests = [self._request(name, node, image, run_dir, shared, plan) for name, node in nodes.items()]

        def joined(name: str) -> None:
            if plan:
                join(self.machines[name].shell, plan, name)

        starts = starter.start_set_up(requests, scenario.setup, self._setup_context, joined) if scenario.setup \
            else starter.start_all(requests, joined)
        result.start = starts[next(iter(starts))] if len(starts) == 1 else starts
        self.mark("ssh_ready")
        assert self.machine is not None
        result.vcpus, result.memory_mib = self.machine.spec.vcpus, self.machine.spec.memory_mib
        return self.ctx

    def _setup_context(self, params: dict[str, Any]) -> ScenarioContext:
        assert self.ctx is not None and self.request.scenario.setup is not None
        return self.ctx.for_setup(self.request.scenario.setup.name, params)

    def _request(self, name: str, node: Node, image: Image, run_dir: RunDir, shared: tuple[DiskSpec, ...],
                 plan: PeerPlan | None) -> MachineRequest:
        """One machine of the run; with several, each has its own directory (console, key) and the cores
        are shared out between them."""
        scenario = self.request.scenario
        if plan is None:
            return MachineRequest(name=name, image=image, directory=run_dir.path, memory=scenario.memory,
                                  cpus=scenario.cpus, disks=node.disks, labels=(("scenario", scenario.name),),
                                  outbound=scenario.outbound)
        return MachineRequest(name=name, image=image, directory=run_dir.path / name,
                              memory=node.memory or scenario.memory,
                              cpus=max(1, scenario.cpus // len(plan.hosts)), disks=node.disks,
                              labels=(("scenario", scenario.name), ("machine", name)), shared=shared,
                              peer=plan.link(name), outbound=scenario.outbound, clone=plan.hosts.index(name))

    # --- reporting and teardown ------------------------------------------

    def _collect_evidence(self, run_dir: RunDir, result: RunResult) -> None:
        several = len(self.machines) > 1
        result.failure_evidence = [path for name, machine in self.machines.items() for path in
                                      collect_failure_evidence(machine, run_dir, self.log, f"{name}/" * several)]

    def _describe(self, exc: BaseException, run_dir: RunDir) -> str:
        where = f"step {self.ctx.current_step!r}: " if self.ctx and self.ctx.current_step else ""
        text = f"{where}{exc}"
        shown = self._failed_machines(exc)
        for machine in shown:
            lines = 30 // len(shown)
            text += f"\n  console (last {lines} lines of {machine.console_path}):\n"
            text += "\n".join(f"    {line}" for line in machine.get_console_tail(lines).splitlines())
        frame = _scenario_frame(exc, self.request.scenario)
        if frame:
            text += f"\n  !!! at {frame}"
        return text + f"\n  artifacts: {run_dir.path}"

    def _failed_machines(self, exc: BaseException) -> list[Machine]:
        """The machine a failed command names, or every machine of the run."""
        named = self.machines.get(getattr(exc, "machine", None) or "")
        return [named] if named else list(self.machines.values())

    def _finish(self, run_dir: RunDir, result: RunResult) -> None:
        wanted = self.request.keep or (self.request.keep_on_failure and result.status != "passed")
        kept = wanted and any(machine.is_running() for machine in self.machines.values())
        with self.phase("cleanup"):
            if kept:
                self._mark_kept(result)
            elif self._provisioner is not None:
                self._provisioner.teardown()
        result.kept, result.phases, result.marks, result.boots = kept, self.phases, self.marks, self._boots()
        result.degraded_units = [f"{name}: {unit}" if len(self.machines) > 1 else unit
                                 for name, machine in self.machines.items() for unit in machine.degraded]
        result.steps, result.facts, result.samples = ((self.ctx.steps, self.ctx.facts, self.ctx.samples)
                                                      if self.ctx else ([], {}, {}))
        result.events = [{"host": name, "at": round(at - self.t0, 2), "what": what}
                         for name, machine in self.machines.items() for at, what in machine.domain.events]
        result.wall_seconds = round(time.monotonic() - self.t0, 2)
        result.write(run_dir.path)
        try:
            self.log.result(f"report: {write_page(run_dir.path, result)}")
        except OSError as exc:  # a full disk or a removed directory: the record above still stands
            self.log.warning(f"could not write the run's report.html: {exc}")

    def _boots(self) -> list[Boot]:
        """Every boot of every host, with its boot id; the first carries the console's phases."""
        boots = [Boot(name, boot_id, round(ready - self.t0, 2), began=round(began - self.t0, 2))
                 for name, machine in self.machines.items() for boot_id, began, ready in machine.readies]
        if boots:
            boots[0].marks = {k: v for k, v in self.marks.items() if k not in ("image_ready", "domain_started")}
        return boots

    def _sit(self, run_dir: RunDir, result: RunResult) -> None:
        """--sit: a run that failed (not one interrupted) waits with its guest up; `lab ssh` finds it."""
        if not self.request.sit or result.status == "passed" or result.interrupted \
                or self.machine is None or not self.machine.is_running():
            return
        dataclasses.replace(result, kept=True, **self._hand_over()).write(run_dir.path)
        limit = self.config.sit_timeout
        self.log.result(f"sitting on the failed run {self.run_id} (Enter tears it down, {SHELL} and Enter opens a "
                        f"Python shell with machine and machines; at most {limit:.0f} s): enter it with lab ssh "
                        f"{self.run_id}  (lab ssh-config {self.run_id}, lab console {self.run_id})")
        self.log.info(f"(sat until {self.pause(limit, python_shell(self.machines))}; tearing down)")

    def _hand_over(self) -> dict[str, Any]:
        """How to log in to the run's guests (`lab ssh RUN [--machine NAME]` reads it from result.json)."""
        logins = {name: machine.hand_over() for name, machine in self.machines.items() if machine.is_running()}
        first = next(iter(logins.values()), {})
        return {"ssh": first, **({"machines": logins} if len(self.machines) > 1 else {})}

    def _mark_kept(self, result: RunResult) -> None:
        for machine in self.machines.values():
            if machine.is_running():
                machine.domain.mark({"id": self.run_id, "kept": "yes"})
        logins = self._hand_over()
        result.ssh, result.machines = logins["ssh"], logins.get("machines", {})
        names = ", ".join(machine.spec.name for machine in self.machines.values())
        self.log.result(f"kept {names}; enter it with: lab ssh {self.run_id}  (console: lab console "
                        f"{self.run_id})\nremove it with: lab destroy {self.run_id}")


def _scenario_frame(exc: BaseException, scenario: Scenario) -> str:
    source = scenario.func.__code__.co_filename
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == source]
    return f"{Path(source).name}:{frames[-1].lineno}: {frames[-1].line}" if frames else ""
