"""Reports of several runs: the terminal table, summary.md/.json and JUnit XML (`lab run --report DIR`)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.doors.breakdown import KINDS, by_kind, shares
from lab.doors.parallel import Outcome
from lab.doors.tables import render
from lab.run.page import PAGE, runs_page
from lab.run.record import RESULT, RunResult

TREND_DEPTH = 10  # reports whose wall times index.html shows for each scenario


def table(outcomes: Sequence[Outcome], wall: float, jobs: int) -> str:
    rows = render(("scenario", "image", "status", "wall", "artifacts"),
                  [(o.job.scenario, o.image, o.status, f"{o.wall:.1f} s", o.artifacts) for o in outcomes])
    return f"{rows}\n{summary_line(outcomes, wall, jobs)}"


def summary_line(outcomes: Sequence[Outcome], wall: float, jobs: int) -> str:
    passed = sum(o.status == "passed" for o in outcomes)
    flaky = sum(o.status == "flaky" for o in outcomes)
    return f"{passed} of {len(outcomes)} passed" + (f", {flaky} flaky" if flaky else "") + \
        f" in {wall:.1f} s (-j {jobs})"


def write(directory: Path, outcomes: Sequence[Outcome], wall: float, jobs: int) -> list[Path]:
    """summary.json, summary.md, junit.xml and index.html in `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = [_entry(o) for o in outcomes]
    last_line = summary_line(outcomes, wall, jobs)
    paths = [directory / name for name in ("summary.json", "summary.md", "junit.xml", "index.html")]
    paths[0].write_text(json.dumps({"wall_seconds": round(wall, 1), "jobs": jobs, "runs": entries}, indent=2) + "\n")
    kinds = shares([e["time_by_kind"] for e in entries])
    paths[1].write_text(_markdown(entries, last_line, kinds))
    ET.ElementTree(_junit(entries, wall)).write(paths[2], encoding="unicode", xml_declaration=True)
    pages = [{**e, "page": _page_link(directory, e["artifacts"]), "variant": variant(e)} for e in entries]
    paths[3].write_text(runs_page(pages, _trends(directory, entries), last_line, TREND_DEPTH, kinds,
                                  [kind for kind in KINDS if any(kind in e["time_by_kind"] for e in entries)]))
    return paths


def _page_link(directory: Path, artifacts: str) -> str:
    page = Path(artifacts) / PAGE if artifacts else None
    return os.path.relpath(page, directory) if page and page.is_file() else ""


def _trends(directory: Path, entries: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each variant's wall seconds in the earlier reports beside this one (`directory`'s siblings), then now:
    the last TREND_DEPTH."""
    found: dict[str, list[float]] = {}
    earlier = sorted(p for p in directory.parent.glob("*/summary.json") if p.parent != directory)
    for path in earlier[-(TREND_DEPTH - 1):]:
        try:
            runs = json.loads(path.read_text()).get("runs", [])
        except (OSError, ValueError):
            continue
        for run in runs if isinstance(runs, list) else []:
            if isinstance(run, dict) and isinstance(run.get("wall_seconds"), int | float):
                found.setdefault(variant(run), []).append(run["wall_seconds"])
    for e in entries:
        found.setdefault(variant(e), []).append(e["wall_seconds"])
    return found


def variant(entry: dict[str, Any]) -> str:
    """A run's scenario, image and parameters: the runs whose wall times belong in one trend."""
    params = entry.get("params")
    params = params if isinstance(params, dict) else {}
    return " ".join([str(entry.get("scenario")), str(entry.get("image") or ""),
                     *(f"{k}={v}" for k, v in sorted(params.items()))])


def _entry(outcome: Outcome) -> dict[str, Any]:
    path = Path(outcome.artifacts) / RESULT if outcome.artifacts else None
    result = RunResult.load(path) if path and path.is_file() else None
    return {"scenario": outcome.job.scenario, "image": outcome.image, "status": outcome.status,
            "exit_code": outcome.exit_code, "wall_seconds": round(outcome.wall, 1), "artifacts": outcome.artifacts,
            "run_id": result.run_id if result else outcome.job.run_id, "start": result.start if result else None,
            "phases": result.phases if result else {}, "failure": (result.failure or None) if result else None,
            "attempts": result.attempts if result else [], "stand_ins": result.stand_ins if result else [],
            "params": result.params if result else {}, "known_issue": result.known_issue if result else {},
            "time_by_kind": by_kind(result) if result else {},
            "steps": [{"name": s["name"], "seconds": s.get("seconds")} for s in result.steps] if result else [],
            "boots": len(result.boots) if result else 0}


def _markdown(entries: list[dict[str, Any]], last_line: str, kinds: list[tuple[str, float, float]]) -> str:
    lines = ["| scenario | image | status | wall (s) | artifacts |", "|---|---|---|---|---|"]
    lines += [f"| {e['scenario']} | {e['image']} | {e['status']} | {e['wall_seconds']} | `{e['artifacts']}` |"
              for e in entries]
    failures = [f"### {e['scenario']} ({e['status']})\n\n```\n{e['failure']}\n```" for e in entries if e["failure"]]
    stand_ins = [f"- {e['scenario']}: {line}" for e in entries for line in e["stand_ins"]]
    said = ["What the lab stands in for (not the real software):", "", *stand_ins, ""] if stand_ins else []
    time = ["Where the time went (every run, by kind):", "", "| kind | seconds | share |", "|---|---|---|",
            *(f"| {kind} | {seconds} | {share} % |" for kind, seconds, share in kinds), ""] if kinds else []
    return "\n".join([*lines, "", last_line, "", *time, *said, *failures]) + "\n"


def _junit(entries: list[dict[str, Any]], wall: float) -> ET.Element:
    suite = ET.Element("testsuite", name="atomic-lab", tests=str(len(entries)), time=f"{wall:.1f}",
                       failures=str(sum(e["status"] == "failed" for e in entries)),
                       errors=str(sum(e["status"] in ("error", "not run") for e in entries)))
    for e in entries:
        case = ET.SubElement(suite, "testcase", classname=f"lab.{e['image'] or 'default'}", name=e["scenario"],
                             time=str(e["wall_seconds"]))
        message = (e["failure"] or "").splitlines()[0] if e["failure"] else e["status"]
        if e["status"] == "failed":
            ET.SubElement(case, "failure", message=message).text = e["failure"]
        elif e["status"] in ("error", "not run"):
            ET.SubElement(case, "error", message=message).text = e["failure"] or f"exit {e['exit_code']}"
        elif e["status"] == "known":
            issue = e.get("known_issue") or {}
            ET.SubElement(case, "skipped", message=f"known issue {issue.get('tracker')} (until {issue.get('expires')})"
                          ).text = e["failure"]
        elif e["status"] == "flaky":
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", name="flaky", value=str(len(e["attempts"])))
        _earlier_attempts(case, e)
        ET.SubElement(case, "system-out").text = f"artifacts: {e['artifacts']}\n"
    return suite


def _earlier_attempts(case: ET.Element, entry: dict[str, Any]) -> None:
    """The failed attempts before the last, as Jenkins and GitLab read them (Maven Surefire's elements): under
    a pass, `flakyFailure`; under a failure, `rerunFailure`."""
    kind = "flakyFailure" if entry["status"] == "flaky" else "rerunFailure"
    for attempt in entry["attempts"][:-1]:
        message = attempt.get("failure") or f"exit {attempt.get('exit_code')}"
        ET.SubElement(case, kind, message=message, type=f"exit {attempt.get('exit_code')}").text = \
            f"artifacts: {attempt.get('artifacts', '')}"
