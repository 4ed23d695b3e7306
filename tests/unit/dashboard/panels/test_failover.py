"""The failover panel: what the health checks predict, and a row per measured kill or pause."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import Lab, LabStatus
from dashboard.panels import failover
from scalelab import catalog
from scalelab.failover import FailoverRecord

from .support import Callbacks, ids, text


@dataclass
class Records:
    """Stands in for the failover tracker: the records it holds."""

    held: list[FailoverRecord] = field(default_factory=list)

    def records(self) -> list[FailoverRecord]:
        return self.held


@dataclass
class TrackingLab:
    """Stands in for the Lab: its status and failover records."""

    failovers: Records = field(default_factory=Records)
    status: LabStatus = field(default_factory=LabStatus)


def test_the_card_holds_the_table():
    assert ids(failover.card()) == ["failover-table"]


def test_without_records_the_note_names_the_balanced_services_and_the_predicted_detection():
    lab = TrackingLab()
    lab.status.detection_bounds = {"gateway": 0.75, "microservice": 1.1}
    note = text(failover.failover_table(lab))  # type: ignore[arg-type]
    for svc in catalog.balanced():
        assert svc.name in note
    assert "Kill or pause a gateway or microservice to measure" in note
    assert "gateways within 0.75 s, microservices within 1.10 s" in note
    assert "failover-records" not in note


def test_a_record_is_a_row_with_its_figures_in_classed_cells():
    started = time.time()
    measured = FailoverRecord(1, "gateway-2", "kill", started, detected_after=0.512, failed=0, retried=3)
    restored = FailoverRecord(2, "microservice-2", "pause", started, 0.9, 0, 0, "resume", 1.5, 1.75)
    lab = TrackingLab(Records([restored, measured]))
    shown = text(failover.failover_table(lab))  # type: ignore[arg-type]
    assert '"id": "failover-records"' in shown
    assert '"data-instance": "gateway-2"' in shown and '"data-instance": "microservice-2"' in shown
    assert '"children": "0.51 s", "className": "detected"' in shown
    assert '"children": "1.75 s", "className": "serving"' in shown
    assert shown.count('"className": "failed"') == 2


def test_each_interval_the_table_is_refreshed(app: Dash, lab: Lab):
    register_panels(app, lab, [failover])
    shown = Callbacks(app).fire("tick", "n_intervals", 1)
    assert "(no pool status yet)" in text(shown["failover-table.children"])
