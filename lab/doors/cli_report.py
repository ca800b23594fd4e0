"""`lab report RUN_ID|latest`: (re)write a run's report.html from its record and print the page's path;
`--open` shows it in a browser where there is one."""

from __future__ import annotations

import argparse
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.base.config import Config
from lab.base.errors import UsageError
from lab.base.log import Log
from lab.run.page import write_page
from lab.run.record import RESULT, RunResult, find_run_dir


def run_dir_of(config: Config, run: str) -> Path:
    """The artifacts directory of a run id, or of the latest run."""
    found = (config.runs_dir / "latest").resolve() if run == "latest" else find_run_dir(config.runs_dir, run)
    if found is None or not (found / RESULT).is_file():
        raise UsageError(f"no run {run!r} under {config.runs_dir} (LAB_RUNS_DIR)")
    return found


def cmd_report(args: argparse.Namespace, config: Config, log: Log) -> int:
    run_dir = run_dir_of(config, args.run_id)
    page = write_page(run_dir, RunResult.load(run_dir / RESULT))
    print(page)
    if args.open and not webbrowser.open(page.as_uri()):
        log.warning("no browser to open it with here: open the path above")
    return 0


def add_parsers(sub: Any, run_ref: Callable[[str], str]) -> None:
    report = sub.add_parser("report", help="write a run's report.html (one page, no network) and print its path")
    report.add_argument("run_id", type=run_ref, metavar="RUN_ID", help="a run id, or latest")
    report.add_argument("--open", action="store_true", help="open it in a browser")
    report.set_defaults(func=cmd_report)
