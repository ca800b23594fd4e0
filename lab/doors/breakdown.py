"""Where a run's time went, by kind, from its record: the image, the first start (a cold boot or a warm
restore), saving a guest for warm starts, a scenario's setup where it ran (to make a checkpoint, or with
checkpoints off), reboots, the steps' own work, the health scan, cleanup. Summed over a nightly with each
kind's share, so the next thing to speed up is chosen by measurement."""

from __future__ import annotations

from lab.run.record import Boot, RunResult

KINDS = ("image", "cold boot", "warm restore", "save for warm starts", "setup",
         "reboots and resets", "steps' own work", "between steps", "health scan", "cleanup")


def by_kind(result: RunResult) -> dict[str, float]:
    """A run's seconds by kind (kinds it spent nothing on left out); they add up to its phases' sum."""
    phases = result.phases
    reboots = sum(max(boot.ready - boot.began, 0.0) for boot in _later_boots(result))
    steps = sum(float(step.get("seconds", 0.0)) for step in result.steps if "setup" not in step)
    found = {
        "image": phases.get("image", 0.0),
        "cold boot": phases.get("boot", 0.0) + phases.get("start", 0.0),
        "warm restore": phases.get("restore", 0.0),
        "save for warm starts": phases.get("save", 0.0),
        "setup": phases.get("setup", 0.0),
        "reboots and resets": reboots,
        "steps' own work": max(steps - reboots, 0.0),
        "between steps": max(phases.get("scenario", 0.0) - steps, 0.0),
        "health scan": phases.get("health", 0.0),
        "cleanup": phases.get("cleanup", 0.0),
    }
    return {kind: round(seconds, 2) for kind, seconds in found.items() if seconds > 0}


def _later_boots(result: RunResult) -> list[Boot]:
    """Each host's boots after its first: the reboots and resets the scenario asked for."""
    seen: set[str] = set()
    later = []
    for boot in sorted(result.boots, key=lambda b: b.ready):
        if boot.host in seen and boot.began:  # a record without `began` (an older lab's) cannot say
            later.append(boot)
        seen.add(boot.host)
    return later


def shares(kinds: list[dict[str, float]]) -> list[tuple[str, float, float]]:
    """Each kind summed over the runs, with its share of the whole, largest first."""
    totals = {kind: sum(k.get(kind, 0.0) for k in kinds) for kind in KINDS}
    whole = sum(totals.values()) or 1.0
    return sorted(((kind, round(seconds, 1), round(100 * seconds / whole, 1)) for kind, seconds in totals.items()
                   if seconds > 0), key=lambda row: -row[1])
