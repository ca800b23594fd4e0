"""Scenarios see only the lab's scenario API (the layers of lab/ itself are import-linter's, in make lint)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API = {"lab.scenario", "lab.context", "lab.machine", "lab.containers", "lab.lvm"}


def test_scenarios_import_only_the_scenario_api() -> None:
    strays = []
    for path in sorted([*(ROOT / "scenarios").glob("*.py"), *(ROOT / "tests" / "scenarios").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            strays += [f"{path.relative_to(ROOT)}: {m}" for m in modules if m.startswith("lab") and m not in API]
    assert not strays, "scenarios import lab modules outside the scenario API:\n" + "\n".join(strays)
