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
import re
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from lab.base.archives import Wanted, extracted
from lab.base.config import Config
from lab.base.errors import ImageError, UsageError
from lab.image.store import load_recipes
from lab.run.record import RESULT, RunResult
from lab.scenario import NAME_RE, Registry, Scenario, load_file

PROVENANCE = "provenance.json"
SOURCE, RECIPE, CLOUDINIT = "source", "image", "cloudinit"  # the run directory's copies
PRIVATE = ("PRIVATE KEY",)  # a file holding this is never bundled
SECRET_NAMES = ("id_*", "*.key", "*.pem", "ssh_host_*")  # nor a file named like a key
_HEX = re.compile(r"[0-9a-f]{12,64}")
_SOURCE_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}\.py")
_RECIPE_FILE = re.compile(r"[a-z0-9][a-z0-9._-]{0,100}\.toml")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._-]{0,100}")
_RUN_DIR = re.compile(r"\d{8}T\d{6}(\.\d+)?Z-[a-z0-9][a-z0-9-]{0,100}")  # the lab's artifacts directories


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
    """The run directory as one .tar.gz, without its secrets."""
    with tarfile.open(out, "w:gz") as tar:
        for path in packed(run_dir)[0]:
            tar.add(path, arcname=f"{run_dir.name}/{path.relative_to(run_dir)}")
    return out


def packed(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """What `pack` takes and what it leaves out: keys by their names, and any file holding a private key."""
    if not (run_dir / PROVENANCE).is_file():
        raise UsageError(f"{run_dir}: this run kept no provenance (made by an older lab): it cannot be rerun")
    taken: list[Path] = []
    left: list[Path] = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        secret = any(fnmatch(path.name, pattern) for pattern in SECRET_NAMES)
        (left if secret or any(mark.encode() in path.read_bytes() for mark in PRIVATE) else taken).append(path)
    return taken, left


@contextmanager
def opened(bundle: Path, wanted: Wanted | None = None) -> Iterator[Path]:
    """The bundle's run directory, extracted: only its record and the code a rerun runs, or what `wanted`
    takes (a path under the run's directory -> copy it?)."""
    if not bundle.is_file() or not tarfile.is_tarfile(bundle):
        raise UsageError(f"{bundle}: not a lab bundle (lab bundle RUN_ID writes one)")
    take = _bundled if wanted is None else (lambda name: wanted(name.partition("/")[2]))
    with extracted(bundle, take, "lab-bundle-") as tmp:
        found = [p.parent for p in tmp.glob(f"*/{PROVENANCE}")]
        if len(found) != 1:
            raise UsageError(f"{bundle}: not a lab bundle (no single {PROVENANCE})")
        yield found[0]


def unpacked_for_report(bundle: Path, root: Path) -> Path:
    """What a report reads of a bundle (its record, console captures, transcript, evidence), copied into a
    directory of its own under `root`, named after the bundle's run; its record checked field by field."""
    with opened(bundle, _reported) as run_dir:
        if not _RUN_DIR.fullmatch(run_dir.name):
            raise UsageError(f"{bundle}: its run directory {run_dir.name[:60]!r} is not named as the lab names runs")
        RunResult.load(run_dir / RESULT)
        target = root / run_dir.name
        if target.exists():  # the same bundle reported again: this directory is ours, and replaced
            shutil.rmtree(target)
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run_dir, target)
    return target


def _reported(inside: str) -> bool:
    parts = inside.split("/")
    return inside in (PROVENANCE, RESULT, "transcript.log", "console.log") or parts[0] == "evidence" or \
        (len(parts) == 2 and parts[1] == "console.log")


def _bundled(name: str) -> bool:
    """The files of a bundle rerun reads: its record and the code it runs, under the run's directory."""
    inside = name.partition("/")[2]
    return inside in (PROVENANCE, "result.json") or inside.startswith((f"{SOURCE}/", f"{RECIPE}/"))


@dataclass(frozen=True)
class Provenance:
    """provenance.json, each value checked: it names files inside the bundle, never paths."""

    scenario: str
    source: str
    source_sha256: str
    recipe: str = ""
    recipe_digest: str = ""

    @classmethod
    def read(cls, run_dir: Path) -> Provenance:
        facts = _json(run_dir / PROVENANCE)
        rules = {"scenario": NAME_RE, "source": _SOURCE_FILE, "source_sha256": _HEX, "recipe": _RECIPE_FILE,
                 "recipe_digest": _HEX}
        for key, rule in rules.items():
            value = facts.get(key, "")
            if not isinstance(value, str) or not (rule.fullmatch(value) or (not value and key.startswith("recipe"))):
                raise UsageError(f"the bundle's {PROVENANCE}: {key} {str(value)[:60]!r} is not one")
        return cls(**{key: facts.get(key, "") for key in rules})


def differences(run_dir: Path, config: Config) -> list[str]:
    """Where the bundle's files are not what its run recorded, and where this checkout's scenario source and
    image recipe differ from the bundle's, plainly."""
    facts = Provenance.read(run_dir)
    bundled = run_dir / SOURCE / facts.source
    if not bundled.is_file():
        raise UsageError(f"the bundle holds no {SOURCE}/{facts.source}, the source its {PROVENANCE} names")
    lines, digest = [], _sha256(bundled)
    if digest != facts.source_sha256:
        lines.append(f"the bundle's {facts.source} is not the file its run used (sha256 {digest[:12]}, "
                     f"recorded {facts.source_sha256[:12]}): it was changed after the run")
    mine = next((s for s in Registry.load(config.scenarios_dirs).all() if s.name == facts.scenario), None)
    if mine is None:
        lines.append(f"scenario {facts.scenario}: not in this checkout; the bundle's source runs")
    elif _sha256(here := Path(mine.func.__code__.co_filename)) != digest:
        diff = difflib.unified_diff(bundled.read_text().splitlines(), here.read_text().splitlines(), "bundle",
                                    str(here), lineterm="", n=0)
        lines += [f"scenario {facts.scenario}: the source here differs from the bundle's (the bundle's runs):",
                  *(f"  {line}" for line in diff)]
    if facts.recipe:
        name = facts.recipe.removesuffix(".toml")
        try:
            theirs = load_recipes((run_dir / RECIPE,)).get(name) if (run_dir / RECIPE).is_dir() else None
        except (ImageError, KeyError, ValueError) as exc:  # someone else's recipe: refused as input, not a lab bug
            raise UsageError(f"the bundle's image recipe: {exc}") from None
        ours = load_recipes(config.images_dirs).get(name)
        for whose, recipe in (("the bundle's", theirs), ("this checkout's", ours)):
            now = recipe.digest if recipe else "absent"  # hashes every file of the recipe: once
            if now != facts.recipe_digest:
                lines.append(f"image recipe {facts.recipe}: {whose} is {now}, "
                             f"its run's was {facts.recipe_digest} (the bundle's recipe builds the image)")
    return lines


def bundled_scenario(run_dir: Path) -> tuple[Scenario, dict[str, Any], str, tuple[Path, ...]]:
    """The bundle's scenario (from its own source: code, run only when the user trusts the bundle), its
    params checked as --set values are, its image (a name: a path belongs to its author's machine), and its
    recipe directory, if any."""
    facts = Provenance.read(run_dir)
    if not (run_dir / RESULT).is_file():
        raise UsageError(f"the bundle holds no {RESULT}: its params and image are needed to rerun it")
    result = RunResult.load(run_dir / RESULT)
    found = [s for s in load_file(run_dir / SOURCE / facts.source) if s.name == facts.scenario]
    if not found:
        raise UsageError(f"the bundle's {facts.source} declares no scenario {facts.scenario!r}")
    if not _IMAGE.fullmatch(result.image):
        raise UsageError(f"the bundle's {RESULT}: image {result.image[:60]!r}: a name is needed to rerun it, "
                         "not a path (it belongs to its author's machine)")
    values = found[0].parse_sets([f"{key}={value}" for key, value in result.params.items()])
    images = (run_dir / RECIPE,) if (run_dir / RECIPE).is_dir() else ()
    return found[0], values, result.image, images


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise UsageError(f"the bundle's {path.name} is missing or not a JSON object")
    return data


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
