"""Rewrite docs/scenarios.md's generated tables (stand-ins, field-note coverage) from the scenarios'
declarations: `make docs`. tests/test_docs.py fails when the page and the declarations differ."""

from __future__ import annotations

import sys
from pathlib import Path

from lab.base.config import Config
from lab.coverage import catalogue, table
from lab.scenario import Registry

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "scenarios.md"
BEGIN, END = "<!-- generated: {} -->", "<!-- end of generated: {} -->"


def sections() -> dict[str, list[str]]:
    scenarios = Registry.load(Config.from_env().scenarios_dirs).all()
    stand_ins = ["| scenario | stand-in |", "|---|---|",
                 *(f"| `{s.name}` | {stand_in.line()} |" for s in scenarios for stand_in in s.stand_ins)]
    behaviours = catalogue(ROOT / "scenarios" / "field-notes.toml")
    return {"stand-ins": stand_ins, "coverage": table(behaviours, ((s.name, s.covers) for s in scenarios))}


def render(text: str) -> str:
    """The page with each generated section replaced by what the declarations say today."""
    for name, lines in sections().items():
        head, found, rest = text.partition(BEGIN.format(name) + "\n")
        _, ended, tail = rest.partition(END.format(name))
        if not (found and ended):
            raise SystemExit(f"{PAGE}: no {BEGIN.format(name)} … {END.format(name)} markers")
        text = head + found + "\n".join(lines) + "\n" + ended + tail
    return text


def main() -> int:
    text = PAGE.read_text()
    new = render(text)
    if new != text:
        PAGE.write_text(new)
        print(f"rewrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
