"""The coverage declarations: mistakes fail at import time, and the table counts each behaviour once."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.coverage import Behaviour, by_stand_in, catalogue, partly, reproduced, table
from lab.scenario import declare

ROOT = Path(__file__).resolve().parent.parent


def _noop(lab: object) -> None:
    """A scenario body that is never run."""


def test_partly_must_say_what_is_missing() -> None:
    with pytest.raises(ValueError, match="say what is missing"):
        declare("x", "one line", _noop, covers=[partly("pv-lost", " ")])


def test_an_unknown_behaviour_is_refused() -> None:
    behaviours = {"a": Behaviour("a", "wiki", "A")}
    with pytest.raises(ValueError, match="unknown behaviour 'b'"):
        table(behaviours, [("x", [reproduced("b")])])


def test_the_best_claim_wins_and_needs_is_said() -> None:
    behaviours = {"a": Behaviour("a", "wiki", "A"), "b": Behaviour("b", "talk", "B", needs="no atomic CLI"),
                  "c": Behaviour("c", "blog", "C")}
    lines = table(behaviours, [("one", [partly("a", "half"), by_stand_in("c", "flannel")]),
                               ("two", [reproduced("a", "newer wording")])])
    assert lines[0] == ("3 behaviours: 1 reproduced, 0 partly, 1 stand-in, 1 needs a real Atomic image, "
                        "0 not yet.")
    assert "| A | wiki | `two`: newer wording | reproduced |" in lines
    assert "| B | talk | no atomic CLI | needs a real Atomic image |" in lines


def test_the_catalogue_loads() -> None:
    behaviours = catalogue(ROOT / "scenarios" / "field-notes.toml")
    assert len(behaviours) >= 63 and all(b.what for b in behaviours.values())
