"""A command's output in the transcript: whole when short; its start and end when long (a whole journal is
evidence, not transcript: one run's transcript held 16 MB of it)."""

from __future__ import annotations

from lab.machine.shell import TRANSCRIPT_OUTPUT, _describe
from lab.machine.ssh import CommandResult


def test_a_short_output_is_kept_whole() -> None:
    text = _describe("uname -r", CommandResult("uname -r", 0, "6.1.0-28-amd64\n", "", 0.1))
    assert text == "rc=0 in 0.10 s\n--- stdout\n6.1.0-28-amd64"


def test_a_long_output_keeps_its_start_and_its_end() -> None:
    journal = "-- Journal begins\n" + "x" * (3 * TRANSCRIPT_OUTPUT) + "\nthe last line"
    text = _describe("journalctl -b", CommandResult("journalctl -b", 0, journal, "", 1.0))
    assert len(text) < TRANSCRIPT_OUTPUT + 200
    assert "-- Journal begins" in text and text.endswith("the last line")
    assert f"[… {len(journal) - TRANSCRIPT_OUTPUT} characters not shown here …]" in text
