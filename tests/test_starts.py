"""How a run with a setup starts, without a hypervisor: the checkpoint is made once, restored afterwards, and
nothing half-made stays when the setup fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from lab.base.config import Config
from lab.base.disks import Disk
from lab.machine.ssh import KeyPair
from lab.provision.warm import Checkpoint, Shape, WarmStore, WarmUnusable
from lab.run.starts import Starter
from lab.setup import Setup
from lab.virt.domain import DiskSpec
from tests.test_warm import _Pool, _shape


@dataclass
class _Machine:
    spec: Any
    destroyed: bool = False
    name: str = "vm1"

    def destroy(self) -> None:
        self.destroyed = True


@dataclass
class _Spec:
    disks: tuple[DiskSpec, ...]


class _Provisioner:
    """Restores and saves as the real one does to the store, with no guest behind."""

    jump = None

    def __init__(self, pool: _Pool, tmp: Path) -> None:
        self.pool, self.tmp, self.restored = pool, tmp, []  # type: list[tuple[str, str]]
        self.machines: list[_Machine] = []
        self.unusable: set[str] = set()  # machines whose saved guest libvirt refuses to restore
        self.discarded: list[str] = []

    def shape(self, request: _MachineRequest | None) -> Shape:
        return replace(_shape(self.pool, "a", "image-a.qcow2"), clone=request.clone if request else 0)

    def restored_machine(self, request: _MachineRequest, store: WarmStore, key: str, *,
                         checkpoint: str = "") -> _Machine:
        self.restored.append((key, checkpoint))
        if request.name in self.unusable:
            self.machines.append(_Machine(_Spec(()), name=request.name))
            raise WarmUnusable(f"saved guest {key}: libvirt refused it")
        disks = {"lab-root": f"run-root-{key}", "cidata": store.seed_volume(key)}
        if checkpoint:
            store.new_key_pair(checkpoint)
            disks = {"lab-root": store.root_volume(checkpoint), "cidata": store.seed_volume(key),
                     "docker": store.disk_volume(checkpoint, "docker")}
            self.pool.volumes |= {disks["lab-root"], disks["docker"]}
        machine = _Machine(_Spec(tuple(DiskSpec(f"/pool/{volume}", serial) for serial, volume in disks.items())),
                           name=request.name)
        self.machines.append(machine)
        return machine

    def discard(self, request: _MachineRequest) -> None:
        self.discarded.append(request.name)
        for machine in self.machines:
            machine.destroyed |= machine.name == request.name

    def teardown(self) -> None:
        for machine in self.machines:
            machine.destroyed = True

    def save(self, _machine: object, store: WarmStore, key: str, shape: Shape,
             checkpoint: Checkpoint | None = None) -> None:
        Path(store.saves.target(key)).write_bytes(b"saved")
        store.mark_saved(key, KeyPair.generate(self.tmp / key, key), frozenset(), shape, (), checkpoint)


@dataclass
class _Log:
    lines: list[str] = field(default_factory=list)

    @contextmanager
    def nested(self, message: str) -> Iterator[None]:
        self.lines.append(message)
        yield

    def warning(self, message: str) -> None:
        self.lines.append(message)


@dataclass
class _Request:
    params: dict[str, Any]
    cold: bool = False


@dataclass
class _Run:
    config: Config
    request: _Request
    run_id: str = "run1"
    log: _Log = field(default_factory=_Log)
    machines: dict[str, Any] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.phases.append(name)
        yield


@dataclass
class _MachineRequest:
    name: str = "vm1"
    disks: tuple[Disk, ...] = (Disk("4G", "docker"),)
    clone: int = 0


@pytest.fixture
def starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Starter, _Provisioner, _Run]:
    """A run whose image has a saved guest already (no cold boot in these tests)."""
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    pool = _Pool({"image-a.qcow2"})
    provisioner = _Provisioner(pool, tmp_path)
    run = _Run(Config.from_env(), _Request({"ordering": "correct"}))
    made = Starter(run, provisioner)  # type: ignore[arg-type]
    made.store.directory.mkdir(parents=True)
    for clone in (0, 1):
        shape = provisioner.shape(_MachineRequest(clone=clone))
        parent = made.store.key(shape)
        pool.volumes |= {made.store.root_volume(parent), made.store.seed_volume(parent)}
        provisioner.save(None, made.store, parent, shape)
    return made, provisioner, run


def _joined(joins: list[str]) -> Any:
    return joins.append


def _setup(calls: list[dict[str, Any]], fail: bool = False) -> Setup:
    def prepare(lab: Any) -> None:
        calls.append(lab)
        if fail:
            raise AssertionError("the install failed")
    return Setup("installed", prepare, reads=("ordering",))


def test_the_first_run_makes_the_checkpoint_and_later_runs_restore_it(
        starter: tuple[Starter, _Provisioner, _Run]) -> None:
    start, provisioner, run = starter
    calls: list[dict[str, Any]] = []
    setup = _setup(calls)
    joins: list[str] = []
    how = start.start_set_up([_MachineRequest()], setup, lambda params: params,  # type: ignore[list-item, arg-type]
                             _joined(joins))["vm1"]
    assert joins == ["vm1"]  # before the setup; not again when restored
    assert how.startswith("checkpoint installed (") and how.endswith(", made by this run)"), how
    assert calls == [{"ordering": "correct"}]  # the parameters it reads, and only those
    (parent, made), (restored, plain) = provisioner.restored
    assert made and restored == made and not plain  # made on the checkpoint's own volumes, then restored
    assert start.store.disks(made)["docker"] == f"warm-{made}-disk-docker.qcow2"
    assert start.store.disks(made)["cidata"] == f"warm-{parent}-seed.iso"
    assert run.phases == ["restore", "setup", "save", "restore"]
    again = Starter(run, provisioner).start_set_up([_MachineRequest()], setup, lambda p: p,  # type: ignore[list-item, arg-type]
                                                   _joined(joins))["vm1"]
    assert again.endswith(", made by run run1)") and len(calls) == 1


def test_a_failed_setup_leaves_no_checkpoint(starter: tuple[Starter, _Provisioner, _Run]) -> None:
    start, provisioner, run = starter
    calls: list[dict[str, Any]] = []
    with pytest.raises(AssertionError, match="the install failed"):
        start.start_set_up([_MachineRequest()], _setup(calls, fail=True), lambda p: p,  # type: ignore[list-item, arg-type]
                           _joined([]))
    key = provisioner.restored[0][1]
    assert provisioner.machines[0].destroyed and not start.store.has(key)
    assert not [v for v in provisioner.pool.volumes if v.startswith(f"warm-{key}-")], provisioner.pool.volumes
    assert not (start.store.directory / f"{key}.id_ed25519").exists() and "vm1" not in run.machines


def test_with_checkpoints_off_every_run_does_the_setup(starter: tuple[Starter, _Provisioner, _Run],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    start, provisioner, run = starter
    monkeypatch.setenv("LAB_CHECKPOINTS", "off")
    run.config = Config.from_env()
    calls: list[dict[str, Any]] = []
    for _ in range(2):
        how = start.start_set_up([_MachineRequest()], _setup(calls), lambda p: p,  # type: ignore[list-item, arg-type]
                                 _joined([]))["vm1"]
        assert how == "warm; setup installed run here (checkpoints off)", how
    assert len(calls) == 2 and all(not checkpoint for _, checkpoint in provisioner.restored)


def test_several_guests_make_their_checkpoints_together_and_are_restored_together(
        starter: tuple[Starter, _Provisioner, _Run]) -> None:
    start, provisioner, run = starter
    calls: list[dict[str, Any]] = []
    joins: list[str] = []
    pair = [_MachineRequest("host1"), _MachineRequest("host2", clone=1)]
    hows = start.start_set_up(pair, _setup(calls), lambda p: p, _joined(joins))  # type: ignore[arg-type]
    assert joins == ["host1", "host2"] and len(calls) == 1  # both on the network, then one setup for both
    made = [checkpoint for _, checkpoint in provisioner.restored if checkpoint]
    restored = [key for key, checkpoint in provisioner.restored if not checkpoint]
    assert len(set(made)) == 2 and restored == made  # a checkpoint each, each restored onto its own guest
    assert hows["host1"] == hows["host2"] and hows["host1"].endswith(", made by this run)")
    alone = start.store.checkpoint_key(start.store.key(provisioner.shape(pair[0])),
                                       _setup([]).digest(run.request.params), [("docker", Disk("4G", "docker").bytes)])
    assert alone not in made  # host1's checkpoint is the pair's, not the one a run of host1 alone makes
    again = Starter(run, provisioner).start_set_up(pair, _setup(calls), lambda p: p, _joined(joins))  # type: ignore[arg-type]
    assert again["host2"].endswith(", made by run run1)") and len(calls) == 1 and len(joins) == 2


def test_a_guest_that_cannot_be_restored_boots_cold_beside_the_others(starter: tuple[Starter, _Provisioner, _Run],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    start, provisioner, run = starter
    provisioner.unusable = {"host2"}
    colds: list[str] = []
    monkeypatch.setattr(start, "_cold", lambda request: colds.append(request.name))
    pair = [_MachineRequest("host1"), _MachineRequest("host2", clone=1)]
    hows = start.start_all(pair, _joined([]))  # type: ignore[arg-type]
    assert not run.machines["host1"].destroyed  # host1 runs on, restored, beside host2's cold boot
    assert hows["host1"] == "warm" and hows["host2"].startswith("cold (saved guest "), hows
    assert provisioner.discarded == ["host2"] and colds == ["host2"]
