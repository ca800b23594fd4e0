"""docs/settings.md lists every environment variable the lab and its scripts read, and every setting."""

from __future__ import annotations

import re
from pathlib import Path

from lab.base.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
READS = re.compile(r"""environ(?:\.get)?[(\[]\s*["']([A-Z][A-Z0-9_]+)["']|Setting\([^)]*["'](LAB_[A-Z_]+)["']""")


def test_every_environment_variable_is_documented() -> None:
    sources = [*(ROOT / "lab").rglob("*.py"), *(ROOT / "scripts").glob("*.py"), ROOT / "Makefile"]
    read = {name for path in sources for match in READS.finditer(path.read_text()) for name in match.groups() if name}
    read |= set(re.findall(r"^([A-Z]+)\s*\?=", (ROOT / "Makefile").read_text(), re.M)) - {"PYTHON", "VENV", "LAB",
                                                                                          "PYTEST", "NAME"}
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "settings.md").read_text()))
    assert read and read <= documented, sorted(read - documented)


def test_every_setting_has_its_row() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.env}` | " + (f"`{setting.key}`" if setting.key else "—") in text, setting


def test_every_stand_in_is_in_the_scenarios_page() -> None:
    """docs/scenarios.md's stand-in table is the scenarios' declarations, row for row."""
    from lab.base.config import Config
    from lab.scenario import Registry

    text = (ROOT / "docs" / "scenarios.md").read_text()
    section = text.split("## What the lab stands in for", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    declared = [f"| `{s.name}` | {stand_in.line()} |" for s in Registry.load(Config.from_env().scenarios_dirs).all()
                for stand_in in s.stand_ins]
    assert rows == declared
