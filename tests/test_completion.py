"""`lab` completes scenario names, run ids, image names and `--set` keys, as bash asks it (argcomplete's
protocol through the installed command), and in an interactive bash through a pty."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LAB = str(Path(sys.executable).with_name("lab"))
SCRIPT = Path(sys.executable).parent.parent / "share" / "bash-completion" / "completions" / "lab"


def complete(line: str, tmp_path: Path, **env: str) -> list[str]:
    """What `lab` offers for the word under the cursor at the end of `line`."""
    out = tmp_path / "offered"
    subprocess.run([LAB], env={**os.environ, **env, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n",
                               "COMP_LINE": line, "COMP_POINT": str(len(line)), "_ARGCOMPLETE_SUPPRESS_SPACE": "1",
                               "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}, check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [word.strip() for word in out.read_text().split("\n") if word.strip() and not word.startswith("-")]


def test_scenario_names(tmp_path: Path) -> None:
    assert sorted(complete("lab run thinpool-", tmp_path)) == ["thinpool-by-hand", "thinpool-full", "thinpool-reuse"]


def test_set_keys_of_the_named_scenario(tmp_path: Path) -> None:
    assert complete("lab run thinpool-reuse --set ", tmp_path) == ["pool_size="]


def test_images(tmp_path: Path) -> None:
    assert {"lab-atomic", "lab-bookworm", "lab-ostree", "fedora-atomic-29"} <= set(
        complete("lab run smoke --image ", tmp_path))


def test_run_ids_newest_first(tmp_path: Path) -> None:
    for stamp, run_id in (("20261201T000000Z-smoke", "aaaa1111"), ("20261202T000000Z-smoke", "bbbb2222")):
        (tmp_path / "runs" / stamp).mkdir(parents=True)
        (tmp_path / "runs" / stamp / "result.json").write_text(f'{{"run_id": "{run_id}", "scenario": "smoke"}}')
    assert complete("lab ssh ", tmp_path, LAB_RUNS_DIR=str(tmp_path / "runs")) == [
        "latest", "bbbb2222", "aaaa1111"]
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "smoke-bbbb2222.tar.gz").touch()
    (bundles / "notes.txt").touch()
    assert complete(f"lab report {bundles}/", tmp_path, LAB_RUNS_DIR=str(tmp_path / "runs")) == [
        f"{bundles}/smoke-bbbb2222.tar.gz"]  # lab report takes a bundle too


@pytest.mark.skipif(not SCRIPT.is_file() or shutil.which("bash") is None, reason="make setup writes the script")
def test_bash_completes_through_a_pty() -> None:
    """A user's shell: bash -i with the script make setup wrote, `lab run overlay-<Tab><Tab>`."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"],
                   {**os.environ, "PATH": f"{Path(LAB).parent}:{os.environ['PATH']}", "PS1": "$ "})
    os.write(fd, f"source {SCRIPT}\n".encode())
    os.write(fd, b"lab run overlay-\t\t")
    seen, deadline = b"", time.monotonic() + 60
    try:
        while (b"overlay-xfs" not in seen or b"overlay-semantics" not in seen) and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                seen += os.read(fd, 4096)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert b"overlay-semantics" in seen and b"overlay-xfs" in seen, seen.decode(errors="replace")
