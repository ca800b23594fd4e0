"""Each report page as a user meets it: Debian's headless Chromium opens the file from disk; no console
message, no failed request; the failure panel, the timeline and the steps are drawn. Screenshots are kept in
runs/report-screenshots/ (a CI artifact)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.doors.parallel import Job, Outcome
from lab.doors.report import write
from lab.run.page import write_page
from lab.run.record import RESULT, RunResult

RECORDS = Path(__file__).parent / "data" / "reports"  # real runs' records (see test_report_page.py)
NAMES = sorted(p.name for p in RECORDS.iterdir())

BROWSER = shutil.which("chromium")
SHOTS = Path(__file__).resolve().parent.parent / "runs" / "report-screenshots"
# Chromium's own complaints about the machine (no D-Bus, no GPU) are not the page's
NOISE = re.compile(r"dbus|gpu|GPU|viz|sandbox|fontconfig|Fontconfig|DEPRECATED_ENDPOINT|gcm|ssl_client")
if BROWSER is None and os.environ.get("CI"):
    pytest.fail("chromium is missing: make host installs it (scripts/setup-host.sh)", pytrace=False)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium (make host installs it)")


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BROWSER or "chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--window-size=1280,1600",
                           *args, page.as_uri()], capture_output=True, text=True, timeout=120, check=True)


def opened(page: Path, name: str) -> str:
    """The page's DOM as Chromium built it; fails on any console message or failed request."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = chromium(page, f"--screenshot={SHOTS / f'{name}.png'}")
    dom = chromium(page, "--dump-dom")
    said = [line for line in (shot.stderr + dom.stderr).splitlines()
            if ("CONSOLE" in line or "net::ERR" in line or "Failed to load" in line) and not NOISE.search(line)]
    assert said == [], said
    assert (SHOTS / f"{name}.png").stat().st_size > 10_000
    return dom.stdout


@pytest.mark.parametrize("name", NAMES)
def test_the_page_opens_in_a_browser_with_nothing_wrong(name: str, tmp_path: Path) -> None:
    run_dir = tmp_path / name
    shutil.copytree(RECORDS / name, run_dir)
    page = write_page(run_dir, RunResult.load(run_dir / RESULT))
    dom = opened(page, name)
    assert '<svg class="timeline"' in dom and 'id="steps"' in dom
    assert ('id="failure"' in dom) == (name == "failed")
    assert ('id="samples"' in dom) == bool(RunResult.load(run_dir / RESULT).samples)


def test_the_runs_page_opens_and_links_every_report(tmp_path: Path) -> None:
    outcomes = []
    for name in NAMES:
        shutil.copytree(RECORDS / name, tmp_path / name)
        result = RunResult.load(tmp_path / name / RESULT)
        write_page(tmp_path / name, result)
        outcomes.append(Outcome(Job(result.scenario), result.status, 0, result.wall_seconds, result.image,
                                str(tmp_path / name)))
    index = write(tmp_path / "nightly", outcomes, 100.0, 2)[3]
    dom = opened(index, "runs")
    assert dom.count("report.html</a>") == len(NAMES)
