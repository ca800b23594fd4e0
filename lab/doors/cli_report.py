"""`lab report RUN_ID|latest|BUNDLE`: (re)write a run's report.html from its record and print the page's
path; a bundle's is written into runs/from-bundles/; `--open` shows it in a browser where there is one."""

from __future__ import annotations

import argparse
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.base.log import Log
from lab.run.bundle import unpacked_for_report
from lab.run.page import write_page
from lab.run.record import RESULT, RunResult, find_run_dir

FROM_BUNDLES = "from-bundles"  # under the runs directory: the bundles' records a report was written from


def run_dir_of(config: Config, run: str) -> Path:
    """The artifacts directory of a run id, or of the latest run."""
    found = (config.runs_dir / "latest").resolve() if run == "latest" else find_run_dir(config.runs_dir, run)
    if found is None or not (found / RESULT).is_file():
        raise UsageError(f"no run {run!r} under {config.runs_dir} (LAB_RUNS_DIR)")
    return found


def cmd_report(args: argparse.Namespace, config: Config, log: Log) -> int:
    if Path(args.run).is_file():
        run_dir = unpacked_for_report(Path(args.run), config.runs_dir / FROM_BUNDLES)
    else:
        run_dir = run_dir_of(config, args.run)
    page = write_page(run_dir, RunResult.load(run_dir / RESULT))
    print(page)
    if args.open and not webbrowser.open(page.as_uri()):
        log.warning("no browser to open it with here: open the path above")
    return 0


def add_parsers(sub: Any, run_ref: Callable[[str], str]) -> None:
    report = sub.add_parser("report", help="write a run's report.html (one page, no network) and print its path")
    report.add_argument("run", type=lambda text: text if Path(text).is_file() else run_ref(text),
                        metavar="RUN_ID|BUNDLE", help="a run id, latest, or a bundle (lab bundle RUN_ID wrote it)")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    report.set_defaults(func=cmd_report)
