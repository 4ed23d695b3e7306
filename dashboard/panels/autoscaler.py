"""The autoscaler panel: switch the control loop on and off, its target and bounds, and what it last did."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html, no_update

from dashboard.changes import ticked
from dashboard.lab import Lab
from dashboard.panels.fields import number_field
from scalelab import catalog
from scalelab.autoscaler import SIGNALS, AutoscalerError, ScalingPolicy

__all__ = ["autoscaler_status", "card", "policy_from_form", "register"]

DEFAULTS = ScalingPolicy()
SIGNAL_LABELS = {"in_flight": "requests in flight per instance", "p95_ms": "p95 latency (ms)"}


def card(lab: Lab) -> dbc.Card:
    """Return the autoscaler card: the switch (as the loop is now), the policy's fields and the status line."""
    scalable = catalog.scalable()
    fields = dbc.Row(
        [
            dbc.Col(
                [
                    dbc.Label("Service", size="sm"),
                    dbc.Select(
                        id="autoscaler-service",
                        options=[{"label": name, "value": name} for name in scalable],
                        value=DEFAULTS.service,
                        size="sm",
                    ),
                ]
            ),
            dbc.Col(
                [
                    dbc.Label("Signal", size="sm"),
                    dbc.Select(
                        id="autoscaler-signal",
                        options=[{"label": SIGNAL_LABELS[name], "value": name} for name in SIGNALS],
                        value=DEFAULTS.signal,
                        size="sm",
                    ),
                ]
            ),
            dbc.Col([dbc.Label("Target", size="sm"), number_field("autoscaler-target", DEFAULTS.target, 0.1, 0.01)]),
            dbc.Col([dbc.Label("Min (0: standard)", size="sm"), number_field("autoscaler-min", 0, 1, 0)]),
            dbc.Col([dbc.Label("Max (0: catalog's)", size="sm"), number_field("autoscaler-max", 0, 1, 0)]),
            dbc.Col(
                [
                    dbc.Label("Cool-down s", size="sm"),
                    number_field("autoscaler-cooldown", DEFAULTS.cooldown_seconds, 0.5, 0.1),
                ]
            ),
        ],
        className="g-2",
    )
    note = html.P(
        "Reads Prometheus every second and adds or removes instances to keep the signal near the target "
        "(like `scalelab autoscale on`). Every decision is marked on the charts.",
        className="small text-muted",
    )
    return dbc.Card(
        [
            dbc.CardHeader("Autoscaler"),
            dbc.CardBody(
                [
                    note,
                    dbc.Switch(
                        id="autoscaler-on",
                        label="Autoscaler on",
                        value=bool(lab.autoscaler_status().get("enabled")),
                        className="mb-2",
                    ),
                    fields,
                    html.Div(id="autoscaler-status", className="small mt-2"),
                ]
            ),
        ],
        className="mb-3",
    )


def policy_from_form(service: Any, signal: Any, target: Any, low: Any, high: Any, cooldown: Any) -> dict[str, Any]:
    """Return the policy fields the form holds (an empty number field keeps the default)."""
    fields = {
        "service": service,
        "signal": signal,
        "target": target,
        "min_instances": low,
        "max_instances": high,
        "cooldown_seconds": cooldown,
    }
    return {name: value for name, value in fields.items() if value not in (None, "")}


def autoscaler_status(status: dict[str, Any]) -> Any:
    """Return the status line: off, or what it watches, the signal it read and its latest decision."""
    if not status.get("enabled"):
        return html.Span("Off: instances change only when you add or remove them.", className="text-muted")
    parts = [f"On: {status['describe']}", f"{status['instances']} running"]
    if status.get("signal") is not None:
        parts.append(f"signal {status['signal']:.3g}")
    decisions = status.get("decisions") or []
    if decisions:
        latest = decisions[-1]
        parts.append(f"last: {latest['label']} ({latest['reason']})")
    line = [html.Span(" · ".join(parts))]
    if status.get("error"):
        line.append(html.Div(status["error"], className="text-danger"))
    return line


def register(app: Dash, lab: Lab) -> None:
    """Switch the autoscaler from the form, and show its status each interval."""

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input("autoscaler-on", "value"),
        State("autoscaler-service", "value"),
        State("autoscaler-signal", "value"),
        State("autoscaler-target", "value"),
        State("autoscaler-min", "value"),
        State("autoscaler-max", "value"),
        State("autoscaler-cooldown", "value"),
        prevent_initial_call=True,
    )
    def switch(on: Any, service: Any, signal: Any, target: Any, low: Any, high: Any, cooldown: Any) -> Any:
        # A press like the others (its own callback, so a click while a refresh is on its way is never
        # dropped); the status line below shows the outcome at the next tick, a refusal in the action banner.
        if bool(on) == bool(lab.autoscaler_status().get("enabled")):
            return no_update
        try:
            lab.set_autoscaler(bool(on), policy_from_form(service, signal, target, low, high, cooldown))
        except AutoscalerError as exc:
            return lab.refuse("autoscaler", str(exc)).label
        return lab.actions.latest().label if lab.actions.latest() else no_update

    @ticked(app, [Output("autoscaler-status", "children")])
    def status() -> Any:
        return [_status()]

    def _status() -> Any:
        # The line tells the truth, the CLI's switches and a refused switch included; the switch stays the user's.
        now = lab.autoscaler_status()
        shown = autoscaler_status(now)
        latest = lab.actions.latest()
        if latest is not None and latest.kind == "autoscaler" and latest.outcome == "failed" and not now["enabled"]:
            return [dbc.Alert(latest.message, color="danger", className="py-1 mb-1"), shown]
        return shown
