"""Shell completion for `lab` with argcomplete: scenario names, run ids, image names and `--set` keys, read
from the checkout's files alone (no libvirt, no network: a Tab must answer at once). `make setup` writes
the bash script (.venv/share/bash-completion/completions/lab); docs/cli.md says how to load it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from typing import Any

import argcomplete
from argcomplete.completers import FilesCompleter

from lab.base.config import Config
from lab.base.errors import LabError
from lab.run.record import RESULT, RunResult
from lab.scenario import Registry

RECENT = 30  # run ids offered, newest first


def scenarios(**_: Any) -> list[str]:
    return Registry.load(Config.from_env().scenarios_dirs).names()


def run_ids(**_: Any) -> list[str]:
    runs = Config.from_env().runs_dir
    found = sorted((p for p in runs.glob(f"*/{RESULT}") if not p.parent.is_symlink()), reverse=True)
    ids = [_run_id(p) for p in found[:RECENT]]
    return ["latest", *dict.fromkeys(i for i in ids if i)]


def runs_and_bundles(prefix: str, **kwargs: Any) -> list[str]:
    """Run ids, and the bundles (`lab bundle` writes .tar.gz files) under the directory being typed."""
    return [*run_ids(), *FilesCompleter(allowednames=("tar.gz",))(prefix, **kwargs)]


def images(**_: Any) -> list[str]:
    config = Config.from_env()
    recipes = {p.stem for d in config.images_dirs for p in d.glob("*.toml")}
    external = {p.stem for d in config.images_dirs for p in (d / "external").glob("*.toml")}
    return sorted(recipes | external)


def set_keys(parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """`KEY=` for each parameter of the scenarios named so far on the line."""
    names = getattr(parsed_args, "names", None) or []
    registry = Registry.load(Config.from_env().scenarios_dirs)
    return sorted({f"{key}=" for name in names if name in registry.names() for key in registry.get(name).params})


COMPLETERS: dict[str, Callable[..., list[str]]] = {
    "names": scenarios, "scenario": scenarios, "run_id": run_ids, "run_ids": run_ids, "run": runs_and_bundles,
    "image": images,
    "set": set_keys,
}


def enable(parser: argparse.ArgumentParser) -> None:
    """When the shell asks (argcomplete's _ARGCOMPLETE), give each argument its completer and answer it
    (argcomplete exits); any other start of `lab` pays nothing for it."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    for action in _actions(parser):
        completer = COMPLETERS.get(action.dest)
        if completer is not None:
            action.completer = _quiet(completer)  # type: ignore[attr-defined]  # argcomplete reads it
    argcomplete.autocomplete(parser)


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)


def _quiet(completer: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """A completer that offers nothing rather than break the shell's line (a bad setting, a broken file)."""
    def complete(**kwargs: Any) -> list[str]:
        try:
            return completer(**kwargs)
        except (LabError, OSError, ValueError):
            return []
    return complete


def _run_id(path: Any) -> str:
    try:
        return RunResult.load(path).run_id
    except LabError:
        return ""
