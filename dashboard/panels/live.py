"""The live panel: the charts of :data:`dashboard.charts.CHARTS` over a chosen window, redrawn each interval.

The line under the page (``refresh-timing``) says how long the last redraw and sample took.
"""

from __future__ import annotations

import time
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Output, State, dcc, html

from dashboard.changes import ticked
from dashboard.charts import CHARTS, build_figure
from dashboard.lab import Lab

__all__ = ["DEFAULT_WINDOW", "WINDOWS", "card", "register", "timing"]

WINDOWS = {"1 min": 60, "5 min": 300, "15 min": 900, "1 hour": 3600}
DEFAULT_WINDOW = WINDOWS["5 min"]


def card() -> dbc.Card:
    """Return the live card: a graph per chart and the window they show."""
    graphs = [
        dbc.Col(dcc.Graph(id=f"chart-{chart.id}", config={"displaylogo": False}, className="chart"), lg=6)
        for chart in CHARTS
    ]
    window = dbc.RadioItems(
        id="window",
        options=[{"label": label, "value": seconds} for label, seconds in WINDOWS.items()],
        value=DEFAULT_WINDOW,
        inline=True,
        className="small",
    )
    return dbc.Card(
        [
            dbc.CardHeader(html.Div([html.Span("Live", className="me-auto"), window], className="d-flex")),
            dbc.CardBody(dbc.Row(graphs, className="g-2")),
        ],
        className="mb-3",
    )


def timing() -> html.Div:
    """Return the line that reports how long drawing the charts and sampling the stack took."""
    return html.Div(id="refresh-timing", className="small text-muted mb-3")


def register(app: Dash, lab: Lab) -> None:
    """Redraw every chart from ``lab``'s history each interval, with the page's other refreshes, and time it.

    A new window shows from the next interval on. A press does not wait for the charts: its
    answer carries its result (dashboard/panels/presses.py).
    """

    @ticked(
        app,
        [*(Output(f"chart-{chart.id}", "figure") for chart in CHARTS), Output("refresh-timing", "children")],
        State("window", "value"),
        compare=False,  # new every interval: the page need not send them back up to be compared
    )
    def draw(window: int | None) -> Any:
        began = time.perf_counter()
        samples = lab.history.window(float(window or DEFAULT_WINDOW))
        actions = lab.actions.recent(samples[0].time if samples else None)
        figures = [build_figure(chart, samples, actions) for chart in CHARTS]
        took = (time.perf_counter() - began) * 1000
        lab.refresh_timings.append(took)
        timing = (
            f"charts drawn from {len(samples)} samples in {took:.0f} ms; the stack was sampled in "
            f"{lab.status.sample_seconds * 1000:.0f} ms; history holds {len(lab.history)} samples"
        )
        return [*figures, timing]
