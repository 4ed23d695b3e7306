"""The banners over the page (where the figures come from, the latest press) and the action log.

Every press on the page is an action in the Lab's log: the banner shows the latest while it is
fresh (a failure for longer), the log lists the recent ones, newest first.
"""

from __future__ import annotations

import time
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Output, html

from dashboard.actionlog import Action
from dashboard.changes import ticked
from dashboard.lab import Lab, LabStatus
from dashboard.panels.text import clock

__all__ = ["ACTION_LOG_ROWS", "action_banner", "action_log", "banners", "card", "register", "source_banner"]

ACTION_BANNER_SECONDS = 15.0
FAILED_BANNER_SECONDS = 30.0
ACTION_LOG_ROWS = 12
OUTCOME_COLOURS = {"ok": "success", "failed": "danger", "pending": "info"}


def banners() -> list[html.Div]:
    """Return the places of the two banners over the page: the figures' source, then the latest press."""
    return [html.Div(id="source-banner"), html.Div(id="action-banner")]


def card() -> dbc.Card:
    """Return the action log's card; it is filled each interval."""
    return dbc.Card([dbc.CardHeader("Actions"), dbc.CardBody(html.Div(id="action-log"))], className="mb-3")


def source_banner(status: LabStatus) -> Any:
    """Return a warning when the figures do not come from Prometheus, saying why and where they come from."""
    if status.source == "prometheus" or not status.time:
        return []
    return dbc.Alert(
        [html.Strong("Prometheus is not reachable. "), status.source_problem],
        color="warning",
        id="prometheus-down",
        className="py-2",
    )


def action_banner(action: Action | None, now: float | None = None) -> Any:
    """Return the banner of the latest action: pending, done, or failed (which stays up longer)."""
    if action is None:
        return []
    age = (time.time() if now is None else now) - action.time
    if action.outcome == "failed" and age < FAILED_BANNER_SECONDS:
        return dbc.Alert([html.Strong(f"{action.label} failed: "), action.message], color="danger", className="py-2")
    if age > ACTION_BANNER_SECONDS:
        return []
    if action.outcome == "pending":
        return dbc.Alert(f"{action.label} …", color="info", className="py-2")
    return dbc.Alert(f"{action.label}: {action.message}", color="success", className="py-2")


def action_log(actions: list[Action]) -> Any:
    """Return the actions as a list, newest first, each with its time, outcome and message."""
    if not actions:
        return html.P("Nothing pressed yet.", className="small text-muted")
    return html.Ul(
        [
            html.Li(
                [
                    html.Span(clock(a.time), className="text-muted me-2"),
                    dbc.Badge(a.outcome, color=OUTCOME_COLOURS[a.outcome], className="me-2"),
                    html.Span(a.label, className="me-2"),
                    html.Span(a.message, className="text-muted"),
                ]
            )
            for a in reversed(actions)
        ],
        className="list-unstyled small mb-0",
    )


def register(app: Dash, lab: Lab) -> None:
    """Refresh the banners and the action log from ``lab`` each interval."""

    @ticked(
        app,
        [Output("source-banner", "children"), Output("action-banner", "children"), Output("action-log", "children")],
    )
    def refresh() -> Any:
        return (
            source_banner(lab.status),
            action_banner(lab.actions.latest()),
            action_log(lab.actions.recent()[-ACTION_LOG_ROWS:]),
        )
