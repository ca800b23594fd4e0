"""How a run's machines come up: restored from a setup's checkpoint or a saved guest, or booted cold.

A saved guest is made by the first run that needs it (boot cold, save); a checkpoint by the first run of a
scenario's setup with its key (restore the saved guest, run the setup, save). Both are made under a lock,
so that runs at once make each once, and are restored by every later run (lab.provision.warm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.context import ScenarioContext
from lab.machine import Machine
from lab.provision.provision import MachineRequest, Provisioner
from lab.provision.warm import Checkpoint, WarmStore, WarmUnusable
from lab.setup import Setup
from lab.virt import console

if TYPE_CHECKING:
    from lab.run.runner import Run

# makes the context a setup runs with, given the parameters it may read
SetupContext = Callable[[dict[str, object]], ScenarioContext]
# puts a started machine, by name, on the run's network between its guests (nothing with one guest)
Join = Callable[[str], None]


class Starter:
    def __init__(self, run: Run, provisioner: Provisioner) -> None:
        self.run, self.provisioner = run, provisioner
        self.store = WarmStore(run.config, provisioner.pool)

    def start(self, request: MachineRequest) -> str:
        """The machine, ready: restored from a saved guest, or booted cold. Returns which."""
        if self.run.request.cold:
            self._cold(request)
            return "cold"
        key, how = self._saved_guest(request)
        try:
            self._restore(request, key)
        except WarmUnusable as exc:
            return self._fall_back(request, exc)
        return how

    def start_set_up(self, requests: list[MachineRequest], setup: Setup, context: SetupContext,
                     join: Join) -> dict[str, str]:
        """The machines with the scenario's setup done: restored from their checkpoint (made by this run if
        there is none yet), or, without checkpoints, started and set up here. Each is on the run's network
        (`join`) before the setup runs; a restored one already was when it was saved."""
        if self.run.request.cold or not self.run.config.checkpoints:
            hows = self.start_all(requests, join)
            self._set_up(setup, context)
            return {name: f"{how}; setup {setup.name} run here (checkpoints off)" for name, how in hows.items()}
        parents = {request.name: self._saved_guest(request)[0] for request in requests}
        keys = self._checkpoint_keys(requests, parents, setup)
        first = keys[requests[0].name]  # the set's lock and its record of who made it
        how = f"checkpoint {setup.name} ({first}"
        with self.store.lock(first):
            if all(self.store.has(key) for key in keys.values()):
                how += f", made by run {self.store.made_by(first) or '?'})"
            else:
                self._make_checkpoint(requests, setup, context, parents, keys, join)
                how += ", made by this run)"
        try:
            for request in requests:
                self._restore(request, keys[request.name])
        except WarmUnusable as exc:
            self._fall_back_all(requests, exc)
            hows = self.start_all(requests, join)
            self._set_up(setup, context)
            return {name: f"{how}; setup {setup.name} run here" for name, how in hows.items()}
        return {request.name: how for request in requests}

    def start_all(self, requests: list[MachineRequest], join: Join) -> dict[str, str]:
        """The machines, each started (`start`) and put on the run's network in turn; how each started."""
        hows = {}
        for request in requests:
            hows[request.name] = self.start(request)
            join(request.name)
        return hows

    def _checkpoint_keys(self, requests: list[MachineRequest], parents: dict[str, str],
                         setup: Setup) -> dict[str, str]:
        """Each machine's checkpoint key. With several, each key covers every machine's saved guest: the set
        is made together and restored together, never mixed with another's."""
        digest = setup.digest(self.run.request.params)
        together = parents if len(requests) > 1 else {}
        return {request.name: self.store.checkpoint_key(parents[request.name], digest,
                                                        [(disk.serial, disk.bytes) for disk in request.disks],
                                                        together)
                for request in requests}

    def _saved_guest(self, request: MachineRequest) -> tuple[str, str]:
        """The key of the saved guest for this machine's shape, saved now if there is none."""
        shape = self.provisioner.shape(request)
        key = self.store.key(shape)
        with self.store.lock(key):
            if self.store.has(key):
                return key, "warm"
            self.store.discard(key)  # what a killed run left half-made
            with self.run.log.nested(f"saving a booted {shape.image.name} guest for warm starts ({key})"):
                try:
                    machine = self.provisioner.saving_machine(request, self.store, key)
                    self.boot_cold(machine)
                    with self.run.phase("save"):
                        self.provisioner.save(machine, self.store, key, shape)
                except BaseException:
                    self.store.discard(key)
                    raise
        return key, "warm (guest saved by this run)"

    def _make_checkpoint(self, requests: list[MachineRequest], setup: Setup, context: SetupContext,
                         parents: dict[str, str], keys: dict[str, str], join: Join) -> None:
        """Restore each machine's saved guest onto its checkpoint's own volumes, run the setup, save each."""
        for key in keys.values():
            self.store.discard(key)  # what a killed run left half-made
        what = ", ".join(keys.values())
        with self.run.log.nested(f"making checkpoint {setup.name} ({what}) from saved guests "
                                 f"{', '.join(parents.values())}"):
            try:
                for request in requests:
                    with self.run.phase("restore"):
                        self.run.machines[request.name] = self.provisioner.restored_machine(
                            request, self.store, parents[request.name], checkpoint=keys[request.name])
                    join(request.name)
                self._set_up(setup, context)
                with self.run.phase("save"):
                    for request in requests:
                        machine = self.run.machines[request.name]
                        others = tuple(key for name, key in parents.items() if name != request.name)
                        made = Checkpoint(parents[request.name], setup.name, self.run.run_id,
                                          {disk.serial: _volume_name(disk.path) for disk in machine.spec.disks},
                                          others)
                        self.provisioner.save(machine, self.store, keys[request.name],
                                              self.provisioner.shape(request), made)
            except BaseException:
                for request in requests:
                    if request.name in self.run.machines:
                        self.run.machines[request.name].destroy()
                for key in keys.values():
                    self.store.discard(key)
                raise
            finally:
                for request in requests:
                    self.run.machines.pop(request.name, None)

    def _set_up(self, setup: Setup, context: SetupContext) -> None:
        with self.run.phase("setup"):
            setup.func(context(setup.params(self.run.request.params)))

    def _restore(self, request: MachineRequest, key: str) -> None:
        with self.run.phase("restore"):
            self.run.machines[request.name] = self.provisioner.restored_machine(request, self.store, key)

    def _fall_back(self, request: MachineRequest, exc: WarmUnusable) -> str:
        self.run.log.warning(f"{request.name}: warm start impossible, booting cold: {exc}")
        self.provisioner.discard(request)  # the restore's machine and volumes; the cold boot makes its own
        self._cold(request)
        return f"cold ({exc})"

    def _fall_back_all(self, requests: list[MachineRequest], exc: WarmUnusable) -> None:
        self.run.log.warning(f"checkpoint unusable, starting without it: {exc}")
        for request in requests:  # every machine restored so far, and its volumes
            self.provisioner.discard(request)
            self.run.machines.pop(request.name, None)

    def _cold(self, request: MachineRequest) -> None:
        self.boot_cold(self.provisioner.machine(request, autodestroy=not self.run.request.keep))

    def boot_cold(self, machine: Machine) -> None:
        run = self.run
        run.machines[machine.name] = machine
        with console.ConsoleWatcher(machine.console_path, run.t0) as watcher:
            with run.phase("start"):
                machine.start()
            run.mark("domain_started")
            with run.phase("boot"):
                machine.wait_for_boot()
        run.marks.update(watcher.seen)


def _volume_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
