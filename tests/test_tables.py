"""Tables through rich: on a terminal a long description wraps inside its column, the longest name keeps its
row in line; through a pipe every row is one line."""

from __future__ import annotations

import pytest

from lab.doors.tables import render

ROWS = [("pool-inactive-at-boot", "A VG on a second disk is not activated at boot when lvm2-activation is masked, "
         "so /srv fails to mount and the boot drops to the emergency shell"), ("smoke", "Boot, disks, a reboot")]


def test_on_a_terminal_a_long_description_wraps_in_its_column(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    lines = render(("scenario", "description"), ROWS, terminal=True).splitlines()
    assert max(map(len, lines)) <= 80 and len(lines) > 3
    column = lines[0].index("description")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines if line.strip())
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == ["scenario", "pool-inactive-at-boot",
                                                                              "smoke"]


def test_through_a_pipe_each_row_is_one_line_and_brackets_stay_text() -> None:
    lines = render(("scenario", "description"), [*ROWS, ("x", "a [bold]scenario[/bold] [stand-ins: etcd]")],
                   terminal=False).splitlines()
    assert len(lines) == 4 and lines[1].endswith("emergency shell")
    assert lines[3].endswith("a [bold]scenario[/bold] [stand-ins: etcd]")
