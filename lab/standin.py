"""What the lab stands in for, where bookworm lacks the real component or a fault must happen at every run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StandIn:
    """A component the lab stands in for where bookworm lacks the real one (or to inject a fault): what the
    stand-in does, and what the real component would do that it does not. Evidence it wrote is labelled."""

    component: str  # "flannel", "atomic install", "lab-srv-inactive.service"
    does: str
    lacks: str

    def line(self) -> str:
        return f"{self.component}: the lab's stand-in {self.does}; it does not {self.lacks}"
