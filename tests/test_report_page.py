"""report.html from real runs' records: verdict first, a failure at the top, the timeline's lanes and bars, the
console and the transcript with each step's anchor; one file under 2 MB that fetches nothing."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest

from lab.run.page import plain_text, write_page
from lab.run.record import RESULT, RunResult

RECORDS = Path(__file__).parent / "data" / "reports"  # result.json, console.log, transcript.log of real runs
NAMES = sorted(p.name for p in RECORDS.iterdir())


def page_of(name: str, tmp_path: Path) -> str:
    run_dir = tmp_path / name
    shutil.copytree(RECORDS / name, run_dir)
    return write_page(run_dir, RunResult.load(run_dir / RESULT)).read_text()


@pytest.mark.parametrize("name", NAMES)
def test_one_self_contained_page(name: str, tmp_path: Path) -> None:
    text = page_of(name, tmp_path)
    assert len(text.encode()) < 2 << 20
    assert "<script" not in text and not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert '<svg class="timeline"' in text and 'id="steps"' in text


def test_a_failure_comes_first_with_its_command(tmp_path: Path) -> None:
    text = page_of("failed", tmp_path)
    assert text.index('id="failure"') < text.index('id="timeline"')
    failure = text[text.index('id="failure"'):text.index('id="timeline"')]
    assert "ls /nonexistent/directory" in failure and "exited 2" in failure
    assert '<rect x=' in text and 'class="failed"' in text  # the failed step's bar


def test_steps_link_to_the_transcript(tmp_path: Path) -> None:
    text = page_of("passed", tmp_path)
    anchors = re.findall(r'<a href="#(step-\d+)">', text)
    assert anchors and all(f'id="{anchor}"' in text for anchor in anchors)
    assert "\x1b[" not in text  # the console's colours are gone


def test_each_step_links_to_where_each_hosts_console_was_when_it_began(tmp_path: Path) -> None:
    """A two-host run: every step has an anchor in host1's and host2's console, at the offset it recorded."""
    text = page_of("two-hosts", tmp_path)
    steps = RunResult.load(RECORDS / "two-hosts" / RESULT).steps
    for index, step in enumerate(steps):
        for console, offset in step["console"].items():
            anchor = f"{re.sub(r'[^A-Za-z0-9_-]', '-', console)}-step-{index}"
            assert f'<a href="#{anchor}">{console}</a>' in text and f'<span id="{anchor}"' in text
            shown = text[:text.index(f'<span id="{anchor}"')].rsplit('<pre class="console">', 1)[1]
            shown = html.unescape(re.sub(r'<span id="[^"]+" class="anchor">.*?</span>', "", shown, flags=re.S))
            assert shown == plain_text((RECORDS / "two-hosts" / console).read_bytes()[:offset])


def test_each_host_has_its_lane(tmp_path: Path) -> None:
    text = page_of("two-hosts", tmp_path)
    lanes = re.findall(r'<text x="4" y="\d+" class="lane">([^<]+)</text>', text)
    assert lanes == ["run", "host1", "host2", "steps"]


def test_samples_are_plotted_with_the_kernels_events(tmp_path: Path) -> None:
    """thinpool-full's pool Data% climbs to 100; dm-thin's switch to queue and error modes on the same axis."""
    text = page_of("thinpool-samples", tmp_path)
    plots = text[text.index('id="samples"'):text.index('id="steps"')]
    assert plots.count("<svg") == 1 and "pool Data%" in plots
    assert "switching pool to out-of-data-space (queue IO) mode" in plots
    assert "switching pool to out-of-data-space (error IO) mode" in plots


def test_hot_plugs_are_events_on_their_hosts_lane(tmp_path: Path) -> None:
    """A disk moved between hosts (docker-disk-move): unplugged on host1, plugged in on host2, each a tick in
    its own lane."""
    text = page_of("two-hosts", tmp_path)
    assert text.count('class="event"') == 3  # plugged into host1 at the start, moved to host2
    assert re.search(r"<title>disk persist unplugged: 4\d\.\d+ s</title>", text)
    assert re.search(r"<title>disk persist plugged in: 4\d\.\d+ s</title>", text)


def test_a_pool_that_grows_is_drawn_with_its_vgs_free_space(tmp_path: Path) -> None:
    """thinpool-full's autoextend: VG free falls and Data% drops at each of dmeventd's extensions."""
    text = page_of("thinpool-autoextend", tmp_path)
    plots = text[text.index('id="samples"'):text.index('id="steps"')]
    assert plots.count("<svg") == 2 and "VG free (MiB)" in plots and "pool Data%" in plots
    assert plots.count("Size of logical volume atomicos/lab-pool_tdata changed from") == 4  # 2 on each plot


def test_the_journals_disk_usage_is_plotted(tmp_path: Path) -> None:
    """journal-log-space: what du says the journal takes while a container logs, under SystemMaxUse=24M."""
    text = page_of("journal-samples", tmp_path)
    plots = text[text.index('id="samples"'):text.index('id="steps"')]
    assert plots.count("<svg") == 1 and "journal on disk (MiB, du)" in plots
    points = RunResult.load(RECORDS / "journal-samples" / RESULT).samples["journal on disk (MiB, du)"]["points"]
    assert len(points) > 10 and max(p["value"] for p in points) <= 24
