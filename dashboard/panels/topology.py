"""The topology panel: a tile per instance, row by row in the order a request travels, with its buttons.

Tiles are drawn when the set of instances changes; their state, load and buttons are refreshed
each interval. Presses (kill, pause, resume, start; add and remove) become the Lab's actions.
"""

from __future__ import annotations

import time
from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, ctx, html, no_update

from dashboard.changes import TICK, refreshing, ticked
from dashboard.lab import INSTANCE_ACTIONS, Lab
from dashboard.sources import (
    CONTAINER_CPU_LIMIT_PREFIX,
    CONTAINER_CPU_PREFIX,
    CONTAINER_MEMORY_LIMIT_PREFIX,
    CONTAINER_MEMORY_PREFIX,
    CPU_PREFIX,
    MEMORY_PREFIX,
    POOLS,
    split_prefix,
)
from scalelab import catalog
from scalelab.stack import Tile

__all__ = [
    "ALLOWED", "STATE_COLOURS", "card", "costs", "instance_buttons", "register", "states_of", "tiers", "tile_card",
    "tile_detail",
]  # fmt: skip

STATE_COLOURS = {"healthy": "success", "down": "danger", "paused": "warning", "starting": "info", "stopped": "danger"}
# Which buttons make sense for each process state; the others are disabled.
ALLOWED = {"running": {"kill", "pause"}, "paused": {"resume", "kill"}, "stopped": {"start"}}
# A target with an action this recent still pending keeps its buttons disabled.
PENDING_SECONDS = 60.0
# Balanced service -> the key prefix of the requests/s its pool sends each of its instances.
SPLITS = {svc.name: split_prefix(pool) for svc, pool in POOLS}


def tiers() -> list[tuple[str, list[str]]]:
    """Return the topology's rows (title, services), from the catalog, in the order a request travels."""
    rows: dict[str, list[str]] = {}
    helpers = [svc for svc in catalog.SERVICES if svc.runs != "service"]
    for svc in [*reversed(catalog.lab_services()), *helpers]:
        rows.setdefault(svc.title, []).append(svc.name)
    return list(rows.items())


def _controllable(service: str) -> bool:
    try:
        return catalog.service(service).controllable
    except catalog.CatalogError:
        return False


def instance_buttons(name: str, kind: str, enabled: set[str] | None = None) -> list[dbc.Button]:
    """Return an instance's kill, pause, resume and start buttons, with ids of type ``kind``.

    ``enabled``: the actions that may be pressed now (None: all of them, until a callback says otherwise).
    """
    return [
        dbc.Button(
            action,
            id={"type": kind, "action": action, "name": name},
            size="sm",
            color="secondary",
            outline=True,
            className="me-1",
            disabled=enabled is not None and action not in enabled,
        )
        for action in INSTANCE_ACTIONS
    ]


def tile_card(tile: Tile) -> html.Div:
    """Return the card of one instance: name, state, load, and its buttons."""
    buttons = instance_buttons(tile.name, "instance-action")
    card_ = dbc.Card(
        dbc.CardBody(
            [
                html.Div(
                    [
                        html.Strong(tile.name, className="me-2"),
                        dbc.Badge(tile.state, id={"type": "tile-state", "name": tile.name}, color="secondary"),
                    ],
                    className="d-flex align-items-center",
                ),
                html.Div(tile.url, className="small text-muted"),
                html.Div(id={"type": "tile-detail", "name": tile.name}, className="small"),
                html.Div(buttons if _controllable(tile.service) else [], className="mt-1"),
            ],
            className="p-2",
        ),
        id={"type": "tile", "name": tile.name},
        className="tile me-2 mb-2",
    )
    return html.Div(card_, **{"data-instance": tile.name})


def tile_detail(tile: Tile, rates: dict[str, float]) -> str:
    """Return the line under a tile: its requests/s and in-flight requests, what it costs, its own note."""
    parts = []
    rate = rates.get(SPLITS[tile.service] + tile.name) if tile.service in SPLITS else None
    if rate is not None:
        parts.append(f"{rate:.0f} req/s")
    parts.extend(costs(tile.name, rates))
    if tile.in_flight is not None:
        parts.append(f"{tile.in_flight} in flight")
    if tile.detail:
        parts.append(tile.detail)
    return " · ".join(parts)


def costs(name: str, rates: dict[str, float]) -> list[str]:
    """Return what an instance costs, in words: its CPU and its memory.

    In a container, as the Docker engine counts them (everything in the container) and against
    the container's limits when it has some (``CPU 42% of 0.5 core``, ``180 of 256 MB``);
    otherwise its process's own figures (``21% CPU``, ``61 MB``; CPU in % of one core).
    """
    parts = []
    container_cpu, cores = rates.get(CONTAINER_CPU_PREFIX + name), rates.get(CONTAINER_CPU_LIMIT_PREFIX + name)
    cpu = container_cpu if container_cpu is not None else rates.get(CPU_PREFIX + name)
    if container_cpu is not None and cores:
        parts.append(f"CPU {container_cpu / cores:.0f}% of {cores:g} core{'s' if cores > 1 else ''}")
    elif cpu is not None:
        parts.append(f"{cpu:.0f}% CPU")
    container_memory = rates.get(CONTAINER_MEMORY_PREFIX + name)
    limit = rates.get(CONTAINER_MEMORY_LIMIT_PREFIX + name)
    memory = container_memory if container_memory is not None else rates.get(MEMORY_PREFIX + name)
    if container_memory is not None and limit:
        parts.append(f"{container_memory / 2**20:.0f} of {limit / 2**20:.0f} MB")
    elif memory is not None:
        parts.append(f"{memory / 2**20:.0f} MB")
    return parts


def _scale_button(service: str, direction: str) -> dbc.Button:
    text, margin = ("+ add", "me-1") if direction == "out" else ("- remove", "me-3")
    return dbc.Button(
        text,
        id={"type": "scale", "service": service, "direction": direction},
        size="sm",
        color="primary",
        outline=True,
        className=margin,
    )


def card() -> dbc.Card:
    """Return the topology card: scale buttons for each service that scales, and the tiles' place."""
    scale = [
        html.Span(
            [html.Span(f"{service}s:", className="me-1"), _scale_button(service, "out"), _scale_button(service, "in")]
        )
        for service in catalog.scalable()
    ]
    return dbc.Card(
        [
            dbc.CardHeader(
                html.Div(
                    [html.Span("Topology and health", className="me-auto"), *scale],
                    className="d-flex align-items-center",
                )
            ),
            dbc.CardBody(html.Div(id="topology")),
        ],
        className="mb-3",
    )


def _rows(tiles: list[Tile]) -> Any:
    rows = []
    for title, services in tiers():
        cards = [tile_card(tile) for tile in tiles if tile.service in services]
        if cards:
            rows.append(
                html.Div(
                    [
                        html.Div(title, className="tier-title small text-muted"),
                        html.Div(cards, className="d-flex flex-wrap"),
                    ]
                )
            )
    return rows or dbc.Alert("No stack is running: start it with `scalelab up`.", color="warning")


def states_of(tiles: dict[str, Tile], outputs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Return the state word and colour of each tile-state output, in the order Dash lists them."""
    states, colours = [], []
    for output in outputs:
        tile = tiles.get(output["id"]["name"])
        states.append(tile.state if tile else "gone")
        colours.append(STATE_COLOURS.get(tile.state, "secondary") if tile else "secondary")
    return states, colours


def register(app: Dash, lab: Lab) -> None:
    """Wire the tiles to ``lab``: redraw them when instances come and go, refresh them, and act on presses."""

    @ticked(app, [Output("instance-names", "data")])
    def instance_names() -> Any:
        return [[tile.name for tile in lab.status.tiles]]

    @app.callback(Output("topology", "children"), Input("instance-names", "data"))
    def topology(_names: list[str] | None) -> Any:
        return _rows(lab.status.tiles)

    # Only what changed is sent: the browser redraws each property it gets, and tiles hold about 80.
    @refreshing(
        app,
        [
            Output({"type": "tile-state", "name": ALL}, "children"),
            Output({"type": "tile-state", "name": ALL}, "color"),
            Output({"type": "tile-detail", "name": ALL}, "children"),
            Output({"type": "instance-action", "action": ALL, "name": ALL}, "disabled"),
        ],
        TICK,
        Input("topology", "children"),
        Input("action-sink", "children"),  # a press's own answer: its result shows at once
    )
    def tile_states(_n: int | None, _children: Any, _pressed: Any) -> Any:
        tiles = {tile.name: tile for tile in lab.status.tiles}
        latest = lab.history.latest()
        rates = latest.values if latest else {}
        pending = {a.target for a in lab.actions.recent(time.time() - PENDING_SECONDS) if a.outcome == "pending"}
        states, colours = states_of(tiles, ctx.outputs_list[0])
        details, disabled = [], []
        for output in ctx.outputs_list[2]:
            tile = tiles.get(output["id"]["name"])
            details.append(tile_detail(tile, rates) if tile else "")
        for output in ctx.outputs_list[3]:
            name, action = output["id"]["name"], output["id"]["action"]
            tile = tiles.get(name)
            disabled.append(tile is None or name in pending or action not in ALLOWED.get(tile.process, set()))
        return [states, colours, details, disabled]

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input({"type": "scale", "service": ALL, "direction": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def scale(_clicks: list[int | None]) -> Any:
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update
        pressed = ctx.triggered_id
        return lab.scale(pressed["service"], pressed["direction"]).label
