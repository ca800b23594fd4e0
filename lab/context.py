"""What a scenario function gets: its machines, parameters, profile, steps and evidence."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from lab.base.artifacts import RunDir
from lab.base.errors import UsageError
from lab.base.log import Log
from lab.image.store import Profile
from lab.machine import Machine
from lab.sampling import Sample, sampled, wall_start

GUEST_TOOLS = Path(__file__).parent / "guest"  # programs scenarios copy into guests


class Step(TypedDict):
    """One step in result.json's `steps`."""

    name: str
    status: str  # passed, failed
    start: NotRequired[float]  # seconds from the run's start
    seconds: NotRequired[float]
    console: NotRequired[dict[str, int]]  # each console capture's size as the step began, by its path in the run
    setup: NotRequired[str]  # the scenario's setup this step belongs to (saved as a checkpoint by this run)


class ScenarioContext:
    """What a scenario function gets: its machines (by host name), parameters and steps."""

    def __init__(self, machines: dict[str, Machine], params: dict[str, Any], run_dir: RunDir, log: Log,
                 profile: Profile, stand_ins: tuple[str, ...] = (), t0: float | None = None) -> None:
        self.machines, self.params, self.run_dir, self.log = machines, params, run_dir, log
        self.t0 = time.monotonic() if t0 is None else t0  # the run's start: steps say when they began
        self.profile = profile  # how this image does things (storage setup tool, root VG, ...)
        self.stand_ins = stand_ins  # the components the scenario declares the lab stands in for
        self.steps: list[Step] = []
        self.facts: dict[str, Any] = {}
        self.samples: dict[str, Sample] = {}  # what `sample` measured, for the report's plots
        self.current_step = ""
        self.setup = ""  # the setup the steps belong to, in the context `for_setup` makes

    @property
    def machine(self) -> Machine:
        """The run's machine, when it has one (a scenario with several names them: `lab.machines["host1"]`)."""
        if len(self.machines) != 1:
            raise UsageError(f"this run has the machines {', '.join(self.machines)}: use lab.machines[NAME]")
        return next(iter(self.machines.values()))

    def move_disk(self, serial: str, source: Machine, target: Machine) -> None:
        """Take the disk with this serial out of one running guest and plug it into another (as an operator
        moves a disk between hosts); the guest it leaves must have let go of it (VG exported, unmounted)."""
        disk = source.get_disk(serial)
        source.detach_disk(serial)
        target.adopt_disk(disk)

    def copy_between(self, source: Machine, remote: str, target: Machine, target_path: str) -> None:
        """Copy a file from one guest to another (through the host)."""
        local = self.run_dir.path / ".copy" / Path(remote).name
        local.parent.mkdir(exist_ok=True)
        try:
            source.copy_from(remote, local)
            target.copy_to(local, target_path)
        finally:
            local.unlink(missing_ok=True)

    def for_setup(self, name: str, params: dict[str, Any]) -> ScenarioContext:
        """The context the scenario's setup runs with: only the parameters it reads; its steps are the run's."""
        ctx = copy.copy(self)
        ctx.params, ctx.setup = params, name
        return ctx

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.current_step = name
        start = time.monotonic()
        consoles = self._console_offsets()
        status = "failed"
        try:
            with self.log.nested(f"step: {name}"):
                yield
            status = "passed"
        finally:
            step: Step = {"name": name, "status": status, "start": round(start - self.t0, 2),
                          "seconds": round(time.monotonic() - start, 2), "console": consoles}
            if self.setup:
                step["setup"] = self.setup
            self.steps.append(step)

    def _console_offsets(self) -> dict[str, int]:
        """Where each guest's console capture ends as a step begins (by its path in the run directory): the
        report links the step to that place."""
        found = {}
        for machine in self.machines.values():
            path = machine.console_path
            if path.is_relative_to(self.run_dir.path):
                found[str(path.relative_to(self.run_dir.path))] = machine.get_console_size()
        return found

    def sample(self, name: str, command: str, *, every: float = 1.0, events: str = "",
               machine: Machine | None = None) -> AbstractContextManager[None]:
        """Sample a number the guest prints (`command`'s first) every `every` s while the block runs, with the
        journal's lines matching regex `events` meanwhile: the run's report plots them on the run's clock.
        `with lab.sample("pool data%", f"lvs --noheadings -o data_percent {pool.lv}", events="thin:"):`"""
        return sampled(machine or self.machine, name, command, every=every, events=events,
                       wall_t0=wall_start(self.t0), into=self.samples)

    def evidence(self, name: str, text: str, *, stand_in: str = "") -> None:
        """Keep guest output in the run's artifacts (evidence/<name>). Output a stand-in of the lab's wrote
        (`stand_in`: the component, as the scenario declares it) is labelled so in the file and the record."""
        if stand_in and stand_in not in self.stand_ins:
            raise UsageError(f"evidence {name}: {stand_in!r} is no stand-in this scenario declares")
        if stand_in:
            text = f"# written by the lab's stand-in for {stand_in}, not by the real {stand_in}\n{text}"
            self.facts.setdefault("stand_in_evidence", {})[name] = stand_in
        self.run_dir.write_evidence(name, text)

    def fetch_evidence(self, remote: str, name: str, machine: Machine | None = None) -> Path:
        """Copy a file the guest made (an archive, a dump) into the run's artifacts (evidence/<name>)."""
        local = self.run_dir.evidence_dir / name
        local.parent.mkdir(parents=True, exist_ok=True)
        (machine or self.machine).copy_from(remote, local)
        return local

    def record(self, key: str, value: Any) -> None:
        """A fact for result.json (a size reached, a message seen, a timing)."""
        self.facts[key] = value

    def install_guest_tool(self, name: str, machine: Machine | None = None) -> str:
        """Copy lab/guest/<name>.py into the guest as /usr/local/sbin/<name, dashed>; returns that path."""
        target = f"/usr/local/sbin/{name.replace('_', '-')}"
        vm = machine or self.machine
        vm.copy_to(GUEST_TOOLS / f"{name}.py", f"/tmp/{name}.py")
        vm.succeed(f"install -m 0755 /tmp/{name}.py {target} && rm -f /tmp/{name}.py")
        return target
