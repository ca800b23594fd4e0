"""A scenario's expensive preparation, saved once as a checkpoint and restored by later runs.

`@scenario(..., setup=Setup("system-images", build_and_install, reads=("ordering",)))`: the first run
restores the image's saved guest, runs `build_and_install` on it and saves the result; every later run
with the same key restores that instead. The key (`digest`) covers what the preparation is made of: its
source and, followed through the names it uses, the source of the project's functions it calls, the
files and folders it names as `Path` constants, the constants it reads and the values of the parameters
it declares in `reads` (the only ones it sees). Change any of them and the next run makes a new
checkpoint: nothing stale is restored. A setup acts on the guest; what the scenario asserts or keeps as
evidence it reads afterwards, from the guest, whether the setup ran in this run or was restored.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.context import ScenarioContext

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
LAB_DIR = Path(__file__).parent
_CONSTANTS = (str, bytes, int, float, bool, tuple, frozenset)


@dataclass(frozen=True)
class Setup:
    """A named preparation (`func`) and the parameters it reads; `files`: what else it copies into the
    guest by name (a guest tool, a folder of images) beyond what its code names."""

    name: str
    func: Callable[[ScenarioContext], None]
    reads: tuple[str, ...] = ()
    files: tuple[Path, ...] = field(default=())

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"setup name {self.name!r} must be lower-case words joined by '-'")
        missing = [str(p) for p in self.files if not p.exists()]
        if missing:
            raise ValueError(f"setup {self.name}: files not found: {', '.join(missing)}")

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        """The parameters the setup reads, and only those (another one is a KeyError in the setup)."""
        return {key: values[key] for key in self.reads}

    def digest(self, values: dict[str, Any]) -> str:
        """What the checkpoint depends on, besides the saved guest it starts from (see the module)."""
        h = hashlib.sha256(json.dumps({"name": self.name, "params": self.params(values)}, sort_keys=True,
                                      default=str).encode())
        roots = {LAB_DIR, Path(inspect.getfile(self.func)).parent}
        _hash_function(self.func, h, roots, set())
        for path in self.files:
            _hash_path(path, h)
        return h.hexdigest()[:16]


def _names(code: CodeType) -> Iterator[str]:
    """The global names a function's code uses, nested functions and comprehensions included."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _ours(obj: Any, roots: set[Path]) -> Path | None:
    """The source file of a function, class or module of the project (the lab's or the scenarios'), or None."""
    try:
        path = Path(inspect.getfile(obj)).resolve()
    except (TypeError, OSError):
        return None  # built-in
    return path if any(path.is_relative_to(root.resolve()) for root in roots) else None


def _hash_function(func: FunctionType | Callable[..., Any], h: Any, roots: set[Path], seen: set[int]) -> None:
    if id(func) in seen or not isinstance(func, FunctionType):
        return
    seen.add(id(func))
    h.update(inspect.getsource(func).encode())
    for name in sorted(set(_names(func.__code__))):
        value = func.__globals__.get(name)
        if isinstance(value, FunctionType) and _ours(value, roots):
            _hash_function(value, h, roots, seen)
        elif isinstance(value, (type, ModuleType)) and _ours(value, roots) and id(value) not in seen:
            seen.add(id(value))
            h.update(inspect.getsource(value).encode())
        elif isinstance(value, Path):
            _hash_path(value, h)
        elif isinstance(value, _CONSTANTS):
            h.update(f"{name}={value!r}".encode())


def _hash_path(path: Path, h: Any) -> None:
    """A file's bytes, or every file's name and bytes under a folder; a path that is not there counts as such."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path.parent)).encode())
        h.update(file.read_bytes() if file.is_file() else b"<absent>")
