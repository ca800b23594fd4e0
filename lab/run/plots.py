"""Plots of what a guest measured (`lab.sample`), with the kernel's events on the same time axis, as inline
SVG for report.html: matplotlib draws them (its object API, no pyplot state, no display needed)."""

from __future__ import annotations

import io
import re
from typing import Any

from matplotlib import rc_context
from matplotlib.figure import Figure

_EVENT = re.compile(r"^(?:device-mapper: thin: )?(?:\d+:\d+: )?")  # dm-thin's prefix and device say nothing here


def plot(name: str, sample: dict[str, Any]) -> str:
    """One sample's points over the run's seconds, each kernel event a labelled vertical line; SVG markup."""
    figure = Figure(figsize=(9.6, 3.2), layout="constrained")
    axes = figure.add_subplot()
    points = sample.get("points", [])
    axes.plot([t for t, _ in points], [v for _, v in points], marker=".", linewidth=1.5, color="#3b5bdb")
    axes.set_xlabel("seconds from the run's start")
    axes.set_ylabel(name)
    axes.grid(alpha=0.3)
    for index, (at, line) in enumerate(sample.get("events", [])):
        axes.axvline(at, color="#c62828", linewidth=1, alpha=0.7)
        left = index % 2 == 0  # neighbours' labels on either side of their lines
        axes.annotate(_EVENT.sub("", line)[:64], (at, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                      fontsize=7, va="top", ha="right" if left else "left", xytext=(-2 if left else 2, -2),
                      textcoords="offset points", color="#c62828")
    out = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):  # text stays text; same ids every time
        figure.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]
