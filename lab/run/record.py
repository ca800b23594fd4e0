"""A run's record, result.json: one typed object, written in one place (the runner) and read through one
loader by everything that reads it (the report, the pytest plugin, parallel runs, bundles, `lab ssh`)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict, get_type_hints

from typeguard import CollectionCheckStrategy, TypeCheckError, check_type

from lab.base.errors import UsageError
from lab.context import Step
from lab.sampling import Sample

SCHEMA = 2  # 2: typed, with every boot of every host; records without a schema are read as 1
RESULT = "result.json"


class HostEvent(TypedDict):
    """A hot-plug or a reset, on its host's lane of the report's timeline."""

    host: str
    at: float
    what: str


@dataclass
class Boot:
    """One boot of one host: its boot id, and when it was ready (seconds from the run's start)."""

    host: str
    boot_id: str
    ready: float
    marks: dict[str, float] = field(default_factory=dict)  # the console's phases, where the lab watched them
    began: float = 0.0  # when the lab started it (or asked for the reboot): a reboot's shutdown counts


@dataclass
class Health:
    unexpected: list[dict[str, Any]] = field(default_factory=list)  # signs of trouble that failed the run
    expected: list[dict[str, Any]] = field(default_factory=list)  # ones the scenario provokes on purpose


@dataclass
class RunResult:
    run_id: str
    scenario: str
    image: str
    params: dict[str, Any]
    artifacts: str
    status: str = "error"  # passed, failed, error; flaky once a rerun passed after failures
    failure: str = ""
    interrupted: bool = False
    accelerator: str = ""
    accelerator_reason: str = ""
    timeout_scale: float = 1.0
    image_verified: bool = False
    image_trust: str = ""
    stand_ins: list[str] = field(default_factory=list)  # what in this reproduction is the lab's, not the real thing
    start: str | dict[str, str] = ""  # warm or cold, and why; by host when there are several
    vcpus: int = 0
    memory_mib: int = 0
    boots: list[Boot] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    events: list[HostEvent] = field(default_factory=list)
    samples: dict[str, Sample] = field(default_factory=dict)  # what `lab.sample` measured, by its name
    health: Health | None = None
    degraded_units: list[str] = field(default_factory=list)
    failure_evidence: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # a flaky run's earlier attempts
    known_issue: dict[str, str] = field(default_factory=dict)  # {tracker, expires}: the failure is known
    kept: bool = False
    ssh: dict[str, Any] = field(default_factory=dict)  # how to log in to a kept run's (first) guest
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)  # the same, by host, when several
    wall_seconds: float = 0.0
    schema: int = SCHEMA

    def write(self, run_dir: Path) -> None:
        """result.json, replaced whole (a reader never sees half of one)."""
        tmp = run_dir / f".{RESULT}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(asdict(self), indent=2, default=str) + "\n")
        tmp.replace(run_dir / RESULT)

    @classmethod
    def load(cls, path: Path) -> RunResult:
        """A result.json (this lab's or an older one's); a file that is none is a UsageError."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not a run's result ({exc})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RunResult:
        if not isinstance(data, dict):
            raise UsageError(f"{where}: not a run's result (a JSON object)")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values.setdefault("params", {})
        try:
            values.update(boots=[Boot(**b) for b in values.get("boots", []) if isinstance(b, dict)],
                          health=Health(**values["health"]) if isinstance(values.get("health"), dict) else None,
                          schema=values.get("schema", 1))
            result = cls(**{"run_id": "", "scenario": "", "image": "", "artifacts": "", **values})
        except TypeError as exc:
            raise UsageError(f"{where}: not a run's result ({exc})") from None
        _check(result, where)
        return result


def _check(record: Any, where: str) -> None:
    """Every field of a record (and of the records it holds) is what its type says: a result.json may come
    from a bundle someone else made, and the report reads every field."""
    for name, hint in get_type_hints(type(record)).items():
        value = getattr(record, name)
        try:
            check_type(value, hint, collection_check_strategy=CollectionCheckStrategy.ALL_ITEMS)
        except TypeCheckError as exc:
            raise UsageError(f"{where}: not a run's result: {name}: {exc}") from None
        for inner in value if isinstance(value, list) else [value]:
            if dataclasses.is_dataclass(inner):
                _check(inner, where)


def find_run_dir(root: Path, run_id: str) -> Path | None:
    """The newest artifacts directory of a run id (a re-run failure's attempts share it)."""
    for path in sorted(root.glob(f"*/{RESULT}"), reverse=True):  # directories start with a UTC stamp
        if path.parent.is_symlink():  # runs/latest
            continue
        try:
            if RunResult.load(path).run_id == run_id:
                return path.parent
        except UsageError:
            continue
    return None


def first_failure_line(run_dir: Path | None) -> str:
    """The first line of a run's failure, as its record says it ("" for none or no record)."""
    path = run_dir / RESULT if run_dir else None
    if path is None or not path.is_file():
        return ""
    try:
        return RunResult.load(path).failure.partition("\n")[0]
    except UsageError:
        return ""
