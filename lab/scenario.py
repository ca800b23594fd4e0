"""Scenario declarations and the registry that loads them from `scenarios/`.

A scenario is a function decorated with `@scenario(...)`; the decorator only
attaches validated metadata, and a `Registry` object collects the decorated
functions of each module it loads (no module-global registry).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.base.disks import Disk
from lab.base.disks import parse_size as parse_size  # scenarios compare sizes with it
from lab.base.errors import ScenarioFailed as ScenarioFailed  # what a scenario raises, and require_ checks
from lab.base.errors import UsageError
from lab.coverage import Covers, check
from lab.coverage import by_stand_in as by_stand_in  # how a scenario declares the field behaviours it covers
from lab.coverage import partly as partly
from lab.coverage import reproduced as reproduced
from lab.params import Param, declared
from lab.params import integer as integer  # the types a scenario declares its parameters with
from lab.params import size as size
from lab.params import word as word
from lab.setup import Setup as Setup  # an expensive preparation, saved once as a checkpoint
from lab.standin import StandIn as StandIn  # what a scenario declares the lab stands in for

if TYPE_CHECKING:
    from lab.context import ScenarioContext

# The built-in scenarios' tags (catalog: nightly only); a user's scenarios may add their own.
TAGS = frozenset({"smoke", "storage", "containers", "ostree", "slow", "catalog"})
NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
DEFAULT_TIMEOUT = 900.0  # seconds a scenario's steps may take, before the accelerator's factor
HOST_RE = re.compile(r"^[a-z][a-z0-9]{0,31}$")  # a machine's name: its host name, the last part of its domain's
ATTR = "__lab_scenario__"
SINGLE = "vm1"  # the one machine of a scenario that declares no `machines`


@dataclass(frozen=True)
class Node:
    """One guest of a scenario with several (`machines={"host1": Node(disks=[...]), ...}`): its own blank
    disks, and its memory when it needs other than the scenario's."""

    disks: tuple[Disk, ...] = ()
    memory: int | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    func: Callable[[ScenarioContext], None]
    image: str | None
    memory: int
    cpus: int
    disks: tuple[Disk, ...]
    params: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    timeout: float = DEFAULT_TIMEOUT
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expected: tuple[re.Pattern[str], ...] = ()  # health-check lines this scenario provokes on purpose
    machines: dict[str, Node] = field(default_factory=dict)  # by host name; empty: one machine, vm1
    shared_disks: tuple[Disk, ...] = ()  # one raw volume each, attached to every machine at once
    outbound: bool = False  # its guests may reach the host and the outside (they cannot by default)
    types: dict[str, Param] = field(default_factory=dict)  # each parameter's type (lab.params)
    stand_ins: tuple[StandIn, ...] = ()  # what in its reproduction is the lab's, not the real software
    covers: tuple[Covers, ...] = ()  # the field notes' behaviours it reproduces (scenarios/field-notes.toml)
    setup: Setup | None = None  # what its runs restore from a checkpoint instead of doing (lab.setup)

    def nodes(self) -> dict[str, Node]:
        """The run's guests by host name, in boot order."""
        return dict(self.machines) or {SINGLE: Node(self.disks, self.memory)}

    def parse_sets(self, sets: list[str]) -> dict[str, Any]:
        """Defaults overridden by `--set KEY=VALUE`, each checked against its parameter's type."""
        values = dict(self.params)
        for item in sets:
            key, sep, raw = item.partition("=")
            if not sep:
                raise UsageError(f"--set {item!r}: expected KEY=VALUE")
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise UsageError(f"--set {key}: {self.name} has no parameter {key!r} (parameters: {known})")
            values[key] = self.types[key].parse(key, raw)
        return values


def declare(name: str, description: str, func: Callable[[ScenarioContext], None], *, image: str | None = None,
            memory: int = 1024, cpus: int = 2, disks: Sequence[Disk] = (), params: dict[str, Any] | None = None,
            tags: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT,
            choices: dict[str, tuple[str, ...]] | None = None, expected: Sequence[str] = (),
            machines: dict[str, Node] | None = None,
            shared_disks: Sequence[Disk] = (), outbound: bool = False, stand_ins: Sequence[StandIn] = (),
            covers: Sequence[Covers] = (), setup: Setup | None = None) -> Scenario:
    """A validated Scenario; mistakes in the declaration fail here, at import time."""
    if not NAME_RE.match(name):
        raise ValueError(f"scenario name {name!r} must be lower-case words joined by '-'")
    if not description.strip() or "\n" in description:
        raise ValueError(f"scenario {name}: description must be one non-empty line")
    bad = sorted(t for t in tags if not NAME_RE.match(t))
    if bad:
        raise ValueError(f"scenario {name}: tags must be lowercase words (a pytest marker each): {bad}")
    _check_machines(name, machines or {}, disks, shared_disks)
    for disk in (*disks, *shared_disks, *(d for node in (machines or {}).values() for d in node.disks)):
        disk.bytes  # noqa: B018 - validates the size now
    types = {key: declared(value, (choices or {}).get(key, ())) for key, value in (params or {}).items()}
    for key, allowed in (choices or {}).items():
        if key not in types or types[key].default not in allowed:
            raise ValueError(f"scenario {name}: choices for {key!r} must include its default")
    if any(not (s.component.strip() and s.does.strip() and s.lacks.strip()) for s in stand_ins):
        raise ValueError(f"scenario {name}: each stand-in names its component, what it does and what it does not")
    check(name, covers)
    _check_setup(name, setup, params or {}, shared_disks)
    for key, param in types.items():  # a default its own type refuses is a mistake of the declaration
        param.parse(key, str(param.default).lower() if param.kind == "flag" else str(param.default))
    return Scenario(name, description, func, image, memory, cpus, tuple(disks),
                    {key: param.default for key, param in types.items()}, frozenset(tags), timeout,
                    dict(choices or {}), tuple(re.compile(rx) for rx in expected),
                    {host: _node(node) for host, node in (machines or {}).items()}, tuple(shared_disks),
                    outbound, types, tuple(stand_ins), tuple(covers), setup)


def _check_setup(name: str, setup: Setup | None, params: dict[str, Any], shared: Sequence[Disk]) -> None:
    if setup is None:
        return
    if shared:
        raise ValueError(f"scenario {name}: a setup's checkpoint saves each guest's own disks; this scenario's "
                         "guests share one")
    unknown = sorted(set(setup.reads) - set(params))
    if unknown:
        raise ValueError(f"scenario {name}: setup {setup.name} reads parameters it does not declare: {unknown}")


def _node(node: Node) -> Node:
    return Node(tuple(node.disks), node.memory)


def _check_machines(name: str, machines: dict[str, Node], disks: Sequence[Disk], shared: Sequence[Disk]) -> None:
    """Host names a guest can carry; serials unique on each guest; shared disks only between machines."""
    bad = [host for host in machines if not HOST_RE.match(host)]
    if bad:
        raise ValueError(f"scenario {name}: machine names must be short host names ([a-z][a-z0-9]*): {bad}")
    if machines and disks:
        raise ValueError(f"scenario {name}: with machines=, give each its disks (Node(disks=...)), not disks=")
    if shared and not machines:
        raise ValueError(f"scenario {name}: shared_disks= needs machines= (a disk shared between guests)")
    for host, node in (machines or {SINGLE: Node(tuple(disks))}).items():
        serials = [d.serial for d in (*node.disks, *shared)]
        if len(set(serials)) != len(serials):
            raise ValueError(f"scenario {name}: disk serials must be unique ({host})")


def scenario(name: str, description: str, **shape: Any,
             ) -> Callable[[Callable[[ScenarioContext], None]], Callable[[ScenarioContext], None]]:
    """Declare a scenario (the keywords of `declare`): `@scenario("thinpool-full", "...", disks=...)`."""

    def decorate(func: Callable[[ScenarioContext], None]) -> Callable[[ScenarioContext], None]:
        setattr(func, ATTR, declare(name, description, func, **shape))
        return func

    return decorate


class Registry:
    def __init__(self) -> None:
        self._scenarios: dict[str, Scenario] = {}

    def add(self, item: Scenario) -> None:
        if item.name in self._scenarios:
            raise ValueError(f"duplicate scenario name {item.name!r}")
        self._scenarios[item.name] = item

    @classmethod
    def load(cls, directories: tuple[Path, ...]) -> Registry:
        """The scenarios of every `*.py` file (not `_*.py`) of these directories."""
        registry = cls()
        missing = [str(d) for d in directories if not d.is_dir()]
        if missing:
            raise UsageError(f"no scenario directory {', '.join(missing)} (see `lab config`)")
        for path in (p for d in directories for p in sorted(d.glob("*.py")) if not p.name.startswith("_")):
            for item in load_file(path):
                registry.add(item)
        return registry

    def names(self) -> list[str]:
        return sorted(self._scenarios)

    def all(self) -> list[Scenario]:
        return [self._scenarios[n] for n in self.names()]

    def get(self, name: str) -> Scenario:
        if name not in self._scenarios:
            raise UsageError(f"unknown scenario {name!r}; valid names: {', '.join(self.names())}")
        return self._scenarios[name]


def load_file(path: Path) -> list[Scenario]:
    """The scenarios one file declares, in the order it declares them."""
    tag = hashlib.sha256(str(path.resolve().parent).encode()).hexdigest()[:8]  # two directories, one file name
    spec = importlib.util.spec_from_file_location(f"lab_scenarios.{path.stem}_{tag}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return [getattr(value, ATTR) for value in vars(module).values() if callable(value) and hasattr(value, ATTR)]
