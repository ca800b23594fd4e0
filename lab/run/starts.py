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

    def start_set_up(self, request: MachineRequest, setup: Setup, context: SetupContext) -> str:
        """The machine with the scenario's setup done: restored from its checkpoint (made by this run if there
        is none yet), or, without checkpoints, started and set up here."""
        if self.run.request.cold or not self.run.config.checkpoints:
            how = self.start(request)
            self._set_up(setup, context)
            return f"{how}; setup {setup.name} run here (checkpoints off)"
        parent, _ = self._saved_guest(request)
        disks = [(disk.serial, disk.bytes) for disk in request.disks]
        key = self.store.checkpoint_key(parent, setup.digest(self.run.request.params), disks)
        how = f"checkpoint {setup.name} ({key}"
        with self.store.lock(key):
            if self.store.has(key):
                how += f", made by run {self.store.made_by(key) or '?'})"
            else:
                self._make_checkpoint(request, setup, context, parent, key)
                how += ", made by this run)"
        try:
            self._restore(request, key)
        except WarmUnusable as exc:
            how = self._fall_back(request, exc)
            self._set_up(setup, context)
        return how

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

    def _make_checkpoint(self, request: MachineRequest, setup: Setup, context: SetupContext, parent: str,
                         key: str) -> None:
        """Restore the saved guest `parent` onto the checkpoint's own volumes, run the setup, save it as `key`."""
        self.store.discard(key)  # what a killed run left half-made
        with self.run.log.nested(f"making checkpoint {setup.name} ({key}) from saved guest {parent}"):
            machine = None
            try:
                with self.run.phase("restore"):
                    machine = self.provisioner.restored_machine(request, self.store, parent, checkpoint=key)
                self.run.machines[request.name] = machine
                self._set_up(setup, context)
                made = Checkpoint(parent, setup.name, self.run.run_id,
                                  {disk.serial: _volume_name(disk.path) for disk in machine.spec.disks})
                with self.run.phase("save"):
                    self.provisioner.save(machine, self.store, key, self.provisioner.shape(request), made)
            except BaseException:
                if machine is not None:
                    machine.destroy()
                self.store.discard(key)
                raise
            finally:
                self.run.machines.pop(request.name, None)

    def _set_up(self, setup: Setup, context: SetupContext) -> None:
        with self.run.phase("setup"):
            setup.func(context(setup.params(self.run.request.params)))

    def _restore(self, request: MachineRequest, key: str) -> None:
        with self.run.phase("restore"):
            self.run.machines[request.name] = self.provisioner.restored_machine(request, self.store, key)

    def _fall_back(self, request: MachineRequest, exc: WarmUnusable) -> str:
        self.run.log.warning(f"warm start impossible, booting cold: {exc}")
        self.provisioner.teardown()  # the restore's volumes; the cold boot makes its own
        self._cold(request)
        return f"cold ({exc})"

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
