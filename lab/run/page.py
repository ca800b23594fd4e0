"""A run's report.html: one self-contained page (no script, style inline, nothing fetched) that a browser opens
from a CI artifact or a bundle. The verdict first, a failure's step, command and console at the top; a
timeline of the run (its steps, each host's boots and the console's phases); the stand-ins; the evidence;
the console and the transcript, each step linked to its place in the transcript."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from lab.context import Step
from lab.run.plots import plot
from lab.run.record import RunResult

PAGE = "report.html"
TEXT_LIMIT = 400_000  # characters of the console and of the transcript each: a page stays under 2 MB
WIDTH, LANE, LEFT = 960, 26, 110  # the timeline's pixels: width of the time axis, one lane, the labels' column
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")  # ANSI sequences, C0 but tab/newline
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["j2"]),
                   trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Bar:
    lane: str
    start: float
    seconds: float
    label: str
    kind: str  # passed, failed, phase, mark (a boot ready), event (a hot-plug, a reset)


def write_page(run_dir: Path, result: RunResult) -> Path:
    """report.html in `run_dir`, from the run's record and the files beside it."""
    path = run_dir / PAGE
    path.write_text(render(run_dir, result))
    return path


def render(run_dir: Path, result: RunResult) -> str:
    names = [s["name"] for s in result.steps]
    transcript, anchors = _transcript(run_dir / "transcript.log", names)
    consoles = [(name, *_console(run_dir, name, result.steps)) for name in _console_names(run_dir)]
    steps = [{**step, "anchor": anchors.get(index),
              "consoles": [(name, console_anchor(name, index)) for name, _, ids in consoles if index in ids]}
             for index, step in enumerate(result.steps)]
    return _ENV.get_template("report.html.j2").render(
        r=result, failed=result.status not in ("passed", "flaky"), timeline=Markup(timeline(result)),
        steps=steps, consoles=[(name, text) for name, text, _ in consoles], transcript=transcript,
        evidence=_evidence(run_dir), facts=_facts(result.facts), start=_start(result.start),
        plots=[(name, Markup(plot(name, sample)), sample["events"]) for name, sample in result.samples.items()])


def runs_page(entries: list[dict[str, Any]], trends: dict[str, list[float]], last_line: str, depth: int,
              shares: list[tuple[str, float, float]], kinds: list[str]) -> str:
    """index.html of several runs: each scenario and image with its status, wall time, a link to its report
    (`page`, relative), its wall times in earlier reports beside this one, where each run's time went by
    kind (`time_by_kind`), and each kind's share over all of them."""
    return _ENV.get_template("runs.html.j2").render(entries=entries, trends=trends, last_line=last_line,
                                                    depth=depth, shares=shares, kinds=kinds)


def bars(result: RunResult) -> list[Bar]:
    """What the timeline draws: steps, each boot's console phases and readiness, the run's own marks."""
    found = [Bar("steps", float(s.get("start", 0.0)), float(s.get("seconds", 0.0)), s["name"], s["status"])
             for s in result.steps if "start" in s]
    for boot in result.boots:
        marks = sorted(boot.marks.items(), key=lambda item: item[1])
        ends = [at for _, at in marks[1:]] + [boot.ready]  # each console phase lasts until the next one
        for (name, at), until in zip(marks, ends, strict=False):
            found.append(Bar(boot.host, at, max(until - at, 0.0), name, "phase"))
        found.append(Bar(boot.host, boot.ready, 0.0, f"ready ({boot.boot_id[:8]})", "mark"))
    found += [Bar(str(e.get("host")), float(e.get("at", 0.0)), 0.0, str(e.get("what")), "event")
              for e in result.events]
    at = 0.0
    for name, seconds in result.phases.items():  # the lab's phases, in the order they ended: one after another
        found.append(Bar("run", at, seconds, name, "phase"))
        at += seconds
    return found


def timeline(result: RunResult) -> str:
    """An inline SVG: one lane per kind (run, each host, steps), time across, a tooltip on every bar."""
    drawn = bars(result)
    end = max([result.wall_seconds, *(b.start + b.seconds for b in drawn), 1.0])
    lanes = list(dict.fromkeys(["run", *(b.lane for b in drawn if b.lane not in ("run", "steps")), "steps"]))
    scale = WIDTH / end
    height = LANE * len(lanes) + 30
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 10}" '
             f'height="{height}" role="img" aria-label="timeline of the run">']
    for row, lane in enumerate(lanes):
        y = row * LANE + 4
        parts.append(f'<text x="4" y="{y + 16}" class="lane">{html.escape(lane)}</text>'
                     f'<line x1="{LEFT}" y1="{y + LANE - 3}" x2="{LEFT + WIDTH}" y2="{y + LANE - 3}" class="rule"/>')
        for bar in (b for b in drawn if b.lane == lane):
            parts.append(_bar(bar, LEFT + bar.start * scale, y, max(bar.seconds * scale, 2.0)))
    for tick in _ticks(end):
        x = LEFT + tick * scale
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" class="tick">{tick:g} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bar(bar: Bar, x: float, y: float, width: float) -> str:
    tip = html.escape(f"{bar.label}: {bar.start:.1f} s" + (f" + {bar.seconds:.1f} s" if bar.seconds else ""))
    label = html.escape(bar.label if width > 7 * len(bar.label) else "")
    if bar.kind in ("mark", "event"):
        return (f'<g><title>{tip}</title><line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + LANE - 6}" '
                f'class="{bar.kind}"/></g>')
    return (f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{LANE - 8}" '
            f'class="{bar.kind}"/><text x="{x + 3:.1f}" y="{y + 13}" class="label">{label}</text></g>')


def _ticks(end: float) -> list[float]:
    step = next(s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600) if end / s <= 12)
    return [float(t) for t in range(0, int(end) + 1, step)]


def _transcript(path: Path, steps: list[str]) -> tuple[Markup, dict[int, str]]:
    """The transcript's last TEXT_LIMIT characters as HTML, each step's first line an anchor."""
    text = _tail(path)
    anchors: dict[int, str] = {}
    lines = []
    for line in text.splitlines():
        escaped = html.escape(line)
        found = re.search(r"step: (.*?)(?: in [\d.]+ s\))?$", line)
        index = next((i for i, name in enumerate(steps) if found and found.group(1) == name and i not in anchors),
                     None)
        if index is not None and "(finished:" not in line:
            anchors[index] = f"step-{index}"
            escaped = f'<span id="step-{index}" class="anchor">{escaped}</span>'
        lines.append(escaped)
    return Markup("\n".join(lines)), anchors


def _console_names(run_dir: Path) -> list[str]:
    found = sorted(run_dir.glob("console.log")) + sorted(run_dir.glob("*/console.log"))
    return [str(path.relative_to(run_dir)) for path in found]


def _console(run_dir: Path, name: str, steps: list[Step]) -> tuple[Markup, set[int]]:
    """A console capture as HTML with an anchor where each step began (the offset the step recorded), and
    which steps got one; its last TEXT_LIMIT characters, as the transcript."""
    try:
        raw = (run_dir / name).read_bytes()
    except OSError:
        return Markup(""), set()
    cuts = sorted((offset, index) for index, step in enumerate(steps)
                  if isinstance(offset := step.get("console", {}).get(name), int) and 0 <= offset <= len(raw))
    texts, at = [], 0
    for offset, _ in cuts:
        texts.append(plain_text(raw[at:offset]))
        at = offset
    texts.append(plain_text(raw[at:]))
    skip = max(sum(map(len, texts)) - TEXT_LIMIT, 0)
    parts, anchored = [_skipped(skip)] if skip else [], set()
    for text, index in zip(texts, [i for _, i in cuts] + [None], strict=True):
        cut = min(skip, len(text))
        skip -= cut
        parts.append(html.escape(text[cut:]))
        if index is not None and not skip:
            mid_line = "\n" if parts and not parts[-1].endswith("\n") else ""  # a prompt without its newline
            parts.append(f'<span id="{console_anchor(name, index)}" class="anchor">{mid_line}'
                         f'[lab] step {index + 1} begins: {html.escape(steps[index]["name"])}\n</span>')
            anchored.add(index)
    return Markup("".join(parts)), anchored


def console_anchor(name: str, index: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', name)}-step-{index}"


def _tail(path: Path) -> str:
    """The file's last TEXT_LIMIT characters, without the terminal's colour codes and control characters."""
    try:
        text = plain_text(path.read_bytes())
    except OSError:
        return ""
    return text if len(text) <= TEXT_LIMIT else _skipped(len(text) - TEXT_LIMIT) + text[-TEXT_LIMIT:]


def plain_text(raw: bytes) -> str:
    """Text as the page shows it: no colour codes, no control characters but tab and newline."""
    return _CONTROL.sub("", raw.decode(errors="replace"))


def _skipped(characters: int) -> str:
    return f"[… {characters} characters before]\n"


def _evidence(run_dir: Path) -> list[str]:
    top = run_dir / "evidence"
    return sorted(str(p.relative_to(run_dir)) for p in top.rglob("*") if p.is_file()) if top.is_dir() else []


def _facts(facts: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, value if isinstance(value, str) else repr(value)) for key, value in facts.items()]


def _start(start: str | dict[str, str]) -> str:
    return start if isinstance(start, str) else ", ".join(f"{host}: {how}" for host, how in start.items())
