"""What a run produced: each variant's records, metrics and events, and the result of the whole experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalelab.experiments.checks import CheckResult
from scalelab.experiments.measure import FailoverEvent
from scalelab.experiments.records import Record
from scalelab.experiments.timeline import Executed
from scalelab.failover import Transition

__all__ = ["Result", "VariantOutcome"]


@dataclass
class VariantOutcome:
    """One variant's run: its setup, the load's records, the timeline as executed, and what was measured."""

    name: str
    records: list[Record] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    setup: list[Executed] = field(default_factory=list)
    actions: list[Executed] = field(default_factory=list)  # the timeline, as carried out
    events: list[FailoverEvent] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    t0: float | None = None  # epoch second the load began
    namespace: str = ""  # the prefix new keys were sent with
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return everything but the records, JSON-ready."""
        return {
            "name": self.name,
            "t0": self.t0,
            "key_namespace": self.namespace,
            "metrics": self.metrics,
            "setup": [executed.to_dict() for executed in self.setup],
            "timeline": [executed.to_dict() for executed in self.actions],
            "failover": [event.to_dict() for event in self.events],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Result:
    """The outcome of an experiment: where its report is, and whether every check passed."""

    name: str
    directory: Path
    passed: bool
    checks: list[CheckResult]
    summary: dict[str, Any]

    @property
    def report(self) -> Path:
        """Return the path of report.html."""
        return self.directory / "report.html"

    @property
    def failed(self) -> list[CheckResult]:
        """Return the checks that failed."""
        return [check for check in self.checks if not check.passed]
