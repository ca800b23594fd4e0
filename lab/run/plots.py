"""Plots of what a guest measured (`lab.sample`), with the journal's events (the kernel's, a daemon's) on the
same time axis, as inline SVG for report.html: matplotlib draws them (its object API, no pyplot state, no
display needed)."""

from __future__ import annotations

import io

from lab.sampling import Sample


def plot(name: str, sample: Sample) -> str:
    """One sample's points over the run's seconds, each event a labelled vertical line; SVG markup."""
    # imported here: matplotlib takes 0.4 s to import, paid by every `lab` command otherwise; only pages
    # with a sample draw
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.6, 3.2), layout="constrained")
    axes = figure.add_subplot()
    points = sample["points"]
    axes.plot([p["at"] for p in points], [p["value"] for p in points], marker=".", linewidth=1.5, color="#3b5bdb")
    axes.set_xlabel("seconds from the run's start")
    axes.set_ylabel(name)
    axes.grid(alpha=0.3)
    for at, label in _labels(sample):
        axes.axvline(at, color="#c62828", linewidth=1, alpha=0.7)
        axes.annotate(label, (at, 1.0), xycoords=("data", "axes fraction"), fontsize=8, va="bottom",
                      ha="center", xytext=(0, 2), textcoords="offset points", color="#c62828")
    out = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):  # text stays text; same ids every time
        figure.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]


def _labels(sample: Sample) -> list[tuple[float, str]]:
    """Each event's number (the page lists the events by number), events closer than 2% of the time axis
    under one label ("1-2") so that numbers never overlap."""
    times = [p["at"] for p in sample["points"]] + [e["at"] for e in sample["events"]]
    near = (max(times) - min(times)) * 0.02 if times else 0.0
    groups: list[tuple[float, int, int]] = []  # where, first number, last number
    for number, event in enumerate(sample["events"], start=1):
        if groups and event["at"] - groups[-1][0] <= near:
            groups[-1] = (groups[-1][0], groups[-1][1], number)
        else:
            groups.append((event["at"], number, number))
    return [(at, str(first) if first == last else f"{first}-{last}") for at, first, last in groups]
