"""docs/settings.md lists every environment variable the lab and its scripts read, and every setting."""

from __future__ import annotations

import importlib.util
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


def test_generated_tables_are_the_declarations() -> None:
    """docs/scenarios.md's stand-in and coverage tables are what the scenarios declare (`make docs`)."""
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "docs" / "scenarios.md").read_text()
    assert module.render(text) == text, "docs/scenarios.md differs from the declarations: run `make docs`"
