"""The Grafana panel: a few panels of the overview dashboard, embedded while Grafana answers.

Their ids are read from the generated dashboard (by title), so a regenerated dashboard that
renumbers its panels still embeds the right ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Output, html

from dashboard.changes import ticked
from dashboard.lab import Lab
from scalelab import paths

__all__ = ["PANEL_TITLES", "card", "dashboard_file", "embedded", "panel_ids", "register"]

# The overview dashboard's panels embedded on the page (single-panel URLs), in this order.
PANEL_TITLES = (
    "Requests per second by gateway",
    "Latency at the load balancer",
    "Backend health",
    "Cache hit ratio",
)
DASHBOARD_UID = "scalelab-overview"
FRAME_HEIGHT = "240px"


def dashboard_file() -> Path:
    """Return the overview dashboard's JSON, as shipped (installed or in a checkout)."""
    return paths.stack_file("grafana", "dashboards", f"{DASHBOARD_UID}.json")


def panel_ids(dashboard: Path | None = None) -> list[tuple[int, str]]:
    """Return ``(panel id, title)`` of the embedded panels the dashboard has; none when it cannot be read."""
    try:
        panels = json.loads((dashboard or dashboard_file()).read_text())["panels"]
    except (OSError, ValueError, KeyError):  # FileNotFoundError included: the page then shows the link only
        return []
    by_title = {panel["title"]: panel["id"] for panel in panels}
    return [(by_title[title], title) for title in PANEL_TITLES if title in by_title]


def card() -> dbc.Card:
    """Return the Grafana card; it is filled each interval."""
    return dbc.Card([dbc.CardHeader("Grafana"), dbc.CardBody(html.Div(id="grafana"))], className="mb-3")


def embedded(lab: Lab, reachable: bool, panels: list[tuple[int, str]]) -> Any:
    """Return the panels in frames and a link to the whole dashboard, or where Grafana was looked for."""
    base = lab.config.grafana_url.rstrip("/")
    if not reachable:
        return html.P(
            f"Grafana is not reachable at {lab.config.grafana_probe_url}; the charts above stand alone. "
            "In Docker it runs with the stack (docker compose up), with the same dashboards.",
            className="small text-muted mb-0",
        )
    frames = [
        dbc.Col(
            html.Iframe(
                src=f"{base}/d-solo/{DASHBOARD_UID}/scalelab?orgId=1&panelId={panel}&refresh=5s&from=now-5m&to=now",
                title=title,
                style={"width": "100%", "height": FRAME_HEIGHT, "border": 0},
            ),
            lg=6,
        )
        for panel, title in panels
    ]
    link = html.A("Open the full dashboard in Grafana", href=f"{base}/d/{DASHBOARD_UID}", target="_blank")
    return [dbc.Row(frames, className="g-2"), link]


def register(app: Dash, lab: Lab) -> None:
    """Show Grafana's panels while ``lab`` finds it reachable (checked each interval)."""
    panels = panel_ids()  # once: the dashboard file does not change while the page runs

    @ticked(app, [Output("grafana", "children")])
    def grafana() -> Any:
        return [embedded(lab, lab.status.grafana, panels)]
