"""Presses on an instance, from its tile or from its node on the traffic map, become the Lab's actions.

A press answers once its action is done (a kill or a pause takes milliseconds; a start up to
PRESS_SETTLE_SECONDS), and its answer carries what the action changed: every tile's state and
the map. Under full-blast load the browser's main thread is busy drawing charts, and a second
round trip for the tiles or the map waited behind them for a second or more (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, ctx, no_update

from dashboard.lab import Lab
from dashboard.panels.topology import states_of
from dashboard.panels.trafficmap import drawn

__all__ = ["PRESS_SETTLE_SECONDS", "register"]

# How long a press waits for its action before answering.
PRESS_SETTLE_SECONDS = 1.0
SHOWN = [
    Output({"type": "tile-state", "name": ALL}, "children", allow_duplicate=True),
    Output({"type": "tile-state", "name": ALL}, "color", allow_duplicate=True),
    Output("traffic-map", "figure", allow_duplicate=True),
    Output("map-paths", "children", allow_duplicate=True),
]


def register(app: Dash, lab: Lab) -> None:
    """Act on the instance buttons of the tiles and of the map; answer with the tiles and the map."""

    def act(_clicks: list[int | None]) -> Any:
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            return [no_update] * (1 + len(SHOWN))  # buttons were (re)drawn, nothing was pressed
        pressed = ctx.triggered_id
        action = lab.instance_action(pressed["action"], pressed["name"])
        lab.settle(action, PRESS_SETTLE_SECONDS)
        states, colours = states_of({tile.name: tile for tile in lab.status.tiles}, ctx.outputs_list[1])
        return [action.label, states, colours, *drawn(lab)]

    for button in ("instance-action", "map-action"):
        app.callback(
            Output("action-sink", "children", allow_duplicate=True),
            *SHOWN,
            Input({"type": button, "action": ALL, "name": ALL}, "n_clicks"),
            prevent_initial_call=True,
        )(act)
