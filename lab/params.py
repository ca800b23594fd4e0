"""A scenario's parameters and their types: what `--set KEY=VALUE` may say. Values reach guest shells, so
each is checked against its type before anything boots, whichever door it came through.

A scenario declares a parameter by its default (`"1G"` is a size, `4` an integer, `"10.40.0.0/16"` one plain
word) or, where the default does not say enough, with a type: `size("1G", extents=True)` also takes
`90%FREE`; `integer(1, minimum=1, maximum=10)`; `word("none", pattern=...)`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lab.base.disks import SIZE_RE, parse_size
from lab.base.errors import UsageError

EXTENTS_RE = re.compile(r"^\d{1,3}%(FREE|VG|PVS|ORIGIN)$")  # lvcreate -l's extents
WORD_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.,:/@+=-]{0,127})?$")  # nothing a shell reads as more than a word
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")


@dataclass(frozen=True)
class Param:
    """A parameter's type and default."""

    kind: str  # "size", "integer", "number", "flag", "choice", "word"
    default: Any
    extents: bool = False  # a size that may also be given in extents (40%FREE)
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str = ""  # a word's own grammar, within WORD_RE's

    def parse(self, key: str, raw: str) -> Any:
        """`raw` as this type's value; a UsageError says what the type takes."""
        try:
            value = self._value(raw)
        except ValueError:
            value = None
        if value is None:
            raise UsageError(f"--set {key}={raw}: expected {self.describe()}")
        return value

    def _value(self, raw: str) -> Any:
        if self.kind == "flag":
            return raw.lower() in TRUE if raw.lower() in TRUE + FALSE else None
        if self.kind in ("integer", "number"):
            number = int(raw) if self.kind == "integer" else float(raw)
            inside = math.isfinite(number) and (self.minimum is None or number >= self.minimum) and (
                self.maximum is None or number <= self.maximum)
            return number if inside else None
        if self.kind == "size":
            if self.extents and EXTENTS_RE.match(raw.upper()):
                return raw
            return raw if SIZE_RE.match(raw.strip().upper()) and parse_size(raw) > 0 else None
        if self.kind == "choice":
            return raw if raw in self.choices else None
        return raw if WORD_RE.match(raw) and (not self.pattern or re.fullmatch(self.pattern, raw)) else None

    def describe(self) -> str:
        """What the type takes, in a few words (lab list, lab run NAME --help, refusals)."""
        bounds = "" if self.minimum is None and self.maximum is None else f" from {self.minimum} to {self.maximum}"
        return {
            "size": "a size (512M, 2G)" + (" or extents (40%FREE, 90%VG)" if self.extents else ""),
            "integer": f"an integer{bounds}", "number": f"a number{bounds}", "flag": "true or false",
            "choice": "one of " + ", ".join(self.choices),
            "word": f"one word matching {self.pattern}" if self.pattern else
                    "one word of letters, digits and _ . , : / @ + = -",
        }[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return {"default": self.default, "type": self.kind, "takes": self.describe()}


def size(default: str, *, extents: bool = False) -> Param:
    return Param("size", default, extents=extents)


def integer(default: int, *, minimum: int | None = None, maximum: int | None = None) -> Param:
    return Param("integer", default, minimum=minimum, maximum=maximum)


def word(default: str, *, pattern: str = "") -> Param:
    return Param("word", default, pattern=pattern)


def declared(default: Any, choices: tuple[str, ...] = ()) -> Param:
    """The type a parameter has: its own declaration, else what its default says."""
    if isinstance(default, Param):
        return default
    if choices:
        return Param("choice", default, choices=tuple(choices))
    if isinstance(default, bool):
        return Param("flag", default)
    if isinstance(default, int | float):
        return Param("integer" if isinstance(default, int) else "number", default)
    if EXTENTS_RE.match(str(default).upper()):
        return Param("size", default, extents=True)
    if SIZE_RE.match(str(default).upper()):
        return Param("size", default)
    return Param("word", default)
