"""Which behaviours of the field notes a scenario covers, and how: the declarations behind docs/scenarios.md's
coverage table. The behaviours themselves are listed once, in `scenarios/field-notes.toml`."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Best first: a behaviour several scenarios cover shows the best of their statuses.
STATUSES = ("reproduced", "partly", "stand-in", "needs a real Atomic image", "not yet")
NOTES = {"blog": "atomic-host-operator-blog.txt", "wiki": "fedora-atomic-wiki.txt",
         "syscont": "system-containers-intro.txt", "talk": "containers-storage-slides.txt",
         "overlay": "overlayfs-discussion.txt"}


@dataclass(frozen=True)
class Covers:
    """One behaviour of the field notes a scenario covers: `remark` says where today's software differs
    (reproduced), what is missing (partly) or which stand-in produces it (stand-in)."""

    behaviour: str
    status: str
    remark: str = ""


def reproduced(behaviour: str, differs: str = "") -> Covers:
    return Covers(behaviour, "reproduced", differs)


def partly(behaviour: str, missing: str) -> Covers:
    return Covers(behaviour, "partly", missing)


def by_stand_in(behaviour: str, component: str) -> Covers:
    return Covers(behaviour, "stand-in", component)


def check(name: str, covers: Sequence[Covers]) -> None:
    """A declaration's mistakes, at import time: partly and stand-in always say what is missing or whose."""
    for item in covers:
        if item.status not in STATUSES[:3]:
            raise ValueError(f"scenario {name}: covers {item.behaviour!r} with unknown status {item.status!r}")
        if item.status != "reproduced" and not item.remark.strip():
            raise ValueError(f"scenario {name}: covers {item.behaviour!r} {item.status}: say what is missing")


@dataclass(frozen=True)
class Behaviour:
    id: str
    note: str  # a key of NOTES
    what: str
    needs: str = ""  # why only a real Fedora/CentOS Atomic image can show it


def catalogue(path: Path) -> dict[str, Behaviour]:
    """The field notes' testable behaviours, by id, in the file's order."""
    rows = tomllib.loads(path.read_text())["behaviour"]
    found = {row["id"]: Behaviour(**row) for row in rows}
    if len(found) != len(rows) or any(b.note not in NOTES for b in found.values()):
        raise ValueError(f"{path}: duplicate ids or unknown notes")
    return found


def table(behaviours: dict[str, Behaviour], declared: Iterable[tuple[str, Sequence[Covers]]]) -> list[str]:
    """docs/scenarios.md's coverage section from each scenario's (name, covers): a count line, then a row
    per behaviour."""
    claims: dict[str, list[tuple[str, Covers]]] = {key: [] for key in behaviours}
    for name, covered in declared:
        for covers in covered:
            if covers.behaviour not in claims:
                raise ValueError(f"scenario {name}: covers unknown behaviour {covers.behaviour!r}")
            claims[covers.behaviour].append((name, covers))
    rows, counts = [], dict.fromkeys(STATUSES, 0)
    for key, behaviour in behaviours.items():
        status, cell = _status(behaviour, claims[key])
        counts[status] += 1
        rows.append("| " + " | ".join(text.replace("|", "\\|") for text in (behaviour.what, behaviour.note, cell,
                                                                              status)) + " |")
    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    return [f"{len(behaviours)} behaviours: {summary}.", "", "| behaviour | note | scenario | status |",
            "|---|---|---|---|", *rows]


def _status(behaviour: Behaviour, claims: list[tuple[str, Covers]]) -> tuple[str, str]:
    if not claims:
        return ("needs a real Atomic image", behaviour.needs) if behaviour.needs else ("not yet", "")
    best = min(STATUSES.index(c.status) for _, c in claims)
    cells = [f"`{name}`" + (f": {c.remark}" if c.remark else "") for name, c in claims
             if STATUSES.index(c.status) == best]
    return STATUSES[best], "; ".join(cells)
