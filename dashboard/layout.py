"""The page: the nav bar, then each panel's card in order, the refresh interval and the stores.

Only the assembly lives here; each card and what fills it is in its panel's module under
:mod:`dashboard.panels`.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard import panels
from dashboard.changes import TICK_ID
from dashboard.lab import Lab

__all__ = ["page"]


def _nav(lab: Lab) -> dbc.NavbarSimple:
    config = lab.config
    links = [
        dbc.NavItem(dbc.NavLink("Prometheus", href=config.prometheus_url, target="_blank", external_link=True)),
        dbc.NavItem(dbc.NavLink("Locust", href=config.loadgen_url, target="_blank", external_link=True)),
        dbc.NavItem(
            dbc.NavLink("Grafana", id="grafana-link", href=config.grafana_url, target="_blank", external_link=True)
        ),
    ]
    return dbc.NavbarSimple(links, brand="ScaleLab control", color="dark", dark=True, className="mb-3", fluid=True)


def page(lab: Lab) -> html.Div:
    """Return the whole page (built per visit, so the knob controls start from their current values)."""
    return html.Div(
        [
            _nav(lab),
            dbc.Container(
                [
                    *panels.actions.banners(),
                    panels.trafficmap.card(),
                    panels.topology.card(),
                    dbc.Row(
                        [dbc.Col(panels.load.card(), lg=6), dbc.Col(panels.knobs.card(lab), lg=6)], className="mb-3"
                    ),
                    panels.live.card(),
                    panels.lessons.card(lab),
                    panels.autoscaler.card(lab),
                    panels.failover.card(),
                    panels.actions.card(),
                    panels.experiments.card(lab),
                    panels.grafana.card(),
                    panels.live.timing(),
                ],
                fluid=True,
            ),
            # Every panel refreshes on this tick; the store holds the instance names the tiles were drawn for.
            dcc.Interval(id=TICK_ID, interval=int(lab.config.refresh_seconds * 1000)),
            dcc.Store(id="instance-names"),
            # Presses write their action's label here: every press callback needs an output.
            html.Div(id="action-sink", hidden=True),
        ]
    )
