"""The "Failover, measured" panel: for each kill or pause of a balanced instance, how long each step took.

The Lab's failover tracker measures; this panel shows its records beside what the pools'
health-check settings predict.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Output, html

from dashboard.changes import ticked
from dashboard.lab import Lab
from dashboard.panels.text import clock, seconds
from dashboard.sources import POOLS

__all__ = ["COLUMNS", "card", "failover_table", "register"]

COLUMNS = (
    "at",
    "instance",
    "action",
    "marked down after",
    "failed",
    "retried",
    "restored by",
    "back in rotation after",
    "serving again after",
    "note",
)


def card() -> dbc.Card:
    """Return the failover card; its table is filled each interval."""
    return dbc.Card(
        [dbc.CardHeader("Failover, measured"), dbc.CardBody(html.Div(id="failover-table"))],
        className="mb-3",
    )


def failover_table(lab: Lab) -> Any:
    """Return the note on what the health checks predict, and a row per measured failover (newest first)."""
    records = lab.failovers.records()
    bounds = lab.status.detection_bounds
    expected = ", ".join(f"{service}s within {bound:.2f} s" for service, bound in sorted(bounds.items()))
    measured = " or ".join(svc.name for svc, _pool in POOLS)
    note = html.P(
        f"Kill or pause a {measured} to measure. The health-check settings predict detection of "
        f"{expected or '(no pool status yet)'} (fall x (interval + timeout)).",
        className="small text-muted",
    )
    if not records:
        return note
    header = html.Thead(html.Tr([html.Th(text) for text in COLUMNS]))
    rows = [
        html.Tr(
            [
                html.Td(clock(r.started)),
                html.Td(r.instance),
                html.Td(r.action),
                html.Td(seconds(r.detected_after), className="detected"),
                html.Td("…" if r.failed is None else r.failed, className="failed"),
                html.Td("…" if r.retried is None else r.retried),
                html.Td(r.restored_by or ""),
                html.Td(seconds(r.marked_up_after) if r.restored_by else ""),
                html.Td(seconds(r.serving_after) if r.restored_by else "", className="serving"),
                html.Td(r.note),
            ],
            **{"data-instance": r.instance},
        )
        for r in records
    ]
    return [note, dbc.Table([header, html.Tbody(rows)], size="sm", striped=True, id="failover-records")]


def register(app: Dash, lab: Lab) -> None:
    """Refresh the failover table from ``lab`` each interval."""

    @ticked(app, [Output("failover-table", "children")])
    def table() -> Any:
        return [failover_table(lab)]
