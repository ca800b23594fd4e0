"""A run handed to a colleague: `lab bundle RUN_ID` packs what it needs to read and rerun it, `lab rerun
BUNDLE` runs the same scenario with the same params on an image built from the same recipe, saying where
the current checkout's scenario source or recipe differs from the bundle's.

Every run keeps its provenance in its directory (`record`): its scenario's source file (and the directory
of files beside it named like it, as scenarios/system-containers/), the image recipe's files (recipe,
assemble script, overlay) and their digest, and the cloud-init templates its seed was rendered from (the
keys are the run's own and stay out)."""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.base.archives import extracted
from lab.base.config import Config
from lab.base.errors import UsageError
from lab.image.store import load_recipes
from lab.scenario import Registry, Scenario, load_file

PROVENANCE = "provenance.json"
SOURCE, RECIPE, CLOUDINIT = "source", "image", "cloudinit"  # the run directory's copies
PRIVATE = ("PRIVATE KEY",)  # a file holding this is never bundled


def record(run_dir: Path, scenario: Scenario, image_ref: str, config: Config) -> dict[str, Any]:
    """Copy the scenario's source file and the image recipe's files into the run directory."""
    source = Path(scenario.func.__code__.co_filename)
    (run_dir / SOURCE).mkdir(exist_ok=True)
    shutil.copy2(source, run_dir / SOURCE / source.name)
    files = source.with_name(source.stem.replace("_", "-"))
    if files.is_dir():
        shutil.copytree(files, run_dir / SOURCE / files.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(config.cloudinit_dir, run_dir / CLOUDINIT)
    facts: dict[str, Any] = {"scenario": scenario.name, "source": source.name, "source_sha256": _sha256(source)}
    recipe = load_recipes(config.images_dirs).get(image_ref)
    if recipe is not None:
        root = recipe.path.parent
        for path in recipe.files[:-1]:  # the build code is the lab's, not the recipe's
            target = run_dir / RECIPE / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        facts |= {"recipe": recipe.path.name, "recipe_digest": recipe.digest}
    (run_dir / PROVENANCE).write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def pack(run_dir: Path, out: Path) -> Path:
    """The run directory as one .tar.gz, without any private key."""
    if not (run_dir / PROVENANCE).is_file():
        raise UsageError(f"{run_dir}: this run kept no provenance (made by an older lab): it cannot be rerun")
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
            if not any(mark.encode() in path.read_bytes() for mark in PRIVATE):
                tar.add(path, arcname=f"{run_dir.name}/{path.relative_to(run_dir)}")
    return out


@contextmanager
def opened(bundle: Path) -> Iterator[Path]:
    """The bundle's run directory, extracted."""
    if not bundle.is_file() or not tarfile.is_tarfile(bundle):
        raise UsageError(f"{bundle}: not a lab bundle (lab bundle RUN_ID writes one)")
    with extracted(bundle, _bundled, "lab-bundle-") as tmp:
        found = [p.parent for p in tmp.glob(f"*/{PROVENANCE}")]
        if not found:
            raise UsageError(f"{bundle}: not a lab bundle (no {PROVENANCE})")
        yield found[0]


def _bundled(name: str) -> bool:
    """The files of a bundle rerun reads: its record and the code it runs, under the run's directory."""
    inside = name.partition("/")[2]
    return inside in (PROVENANCE, "result.json") or inside.startswith((f"{SOURCE}/", f"{RECIPE}/"))


def differences(run_dir: Path, config: Config) -> list[str]:
    """Where this checkout's scenario source and image recipe differ from the bundle's, plainly."""
    facts = json.loads((run_dir / PROVENANCE).read_text())
    lines = []
    current = Registry.load(config.scenarios_dirs).all()
    mine = next((s for s in current if s.name == facts["scenario"]), None)
    if mine is None:
        lines.append(f"scenario {facts['scenario']}: not in this checkout; the bundle's source runs")
    else:
        here = Path(mine.func.__code__.co_filename)
        if _sha256(here) != facts["source_sha256"]:
            diff = difflib.unified_diff((run_dir / SOURCE / facts["source"]).read_text().splitlines(),
                                        here.read_text().splitlines(), "bundle", str(here), lineterm="", n=0)
            lines += [f"scenario {facts['scenario']}: the source here differs from the bundle's (the bundle's runs):",
                      *(f"  {line}" for line in diff)]
    if "recipe_digest" in facts:
        recipe = load_recipes(config.images_dirs).get(facts["recipe"].removesuffix(".toml"))
        if recipe is None or recipe.digest != facts["recipe_digest"]:
            now = recipe.digest if recipe else "absent"
            lines.append(f"image recipe {facts['recipe']}: {now} here, {facts['recipe_digest']} in the bundle "
                         "(the bundle's recipe builds the image)")
    return lines


def bundled_scenario(run_dir: Path) -> tuple[Scenario, dict[str, Any], str, tuple[Path, ...]]:
    """The bundle's scenario (from its own source), params, image, and its recipe directory, if any."""
    facts = json.loads((run_dir / PROVENANCE).read_text())
    result = json.loads((run_dir / "result.json").read_text())
    found = [s for s in load_file(run_dir / SOURCE / facts["source"]) if s.name == facts["scenario"]]
    if not found:
        raise UsageError(f"the bundle's {facts['source']} declares no scenario {facts['scenario']!r}")
    images = (run_dir / RECIPE,) if (run_dir / RECIPE).is_dir() else ()
    return found[0], dict(result["params"]), str(result["image"]), images


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
