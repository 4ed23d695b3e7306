"""The traffic map: every instance a node coloured by its state, every request path an edge with its live rate.

Columns follow the request: the load engine (the clients), the entry, then each pool's members
and each caller's dependencies one column further, all derived from the catalog. An edge's width
grows with its requests a second and it turns red while requests on it fail. Pressing a node
offers its buttons. A list under the map says the same in words.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html, no_update

from dashboard.changes import ticked
from dashboard.lab import Lab
from dashboard.panels.topology import ALLOWED, instance_buttons
from dashboard.sources import CALLS_PREFIX, EDGE_SEPARATOR, POOLS, edge_error_prefix, edge_prefix
from scalelab import catalog
from scalelab.catalog import service_of
from scalelab.stack import Tile

__all__ = ["Path", "card", "columns", "map_figure", "paths", "register"]

NODE_COLOURS = {
    "healthy": "#198754",
    "starting": "#0dcaf0",
    "paused": "#fd7e14",
    "down": "#dc3545",
    "stopped": "#dc3545",
}
QUIET, FAILING = "#adb5bd", "#dc3545"
# Failed requests a second on a path above which it is drawn red.
FAILING_RATE = 0.05


@dataclass(frozen=True)
class Path:
    """A request path between two instances and what crosses it now."""

    source: str
    target: str
    rate: float  # requests a second
    errors: float = 0.0  # failed requests a second (5xx or no answer)

    def describe(self) -> str:
        """Return the path in words: ``load-balancer → gateway-1: 20 req/s``."""
        failing = f", {self.errors:.1f} failing/s" if self.errors >= FAILING_RATE else ""
        return f"{self.source} → {self.target}: {self.rate:.1f} req/s{failing}"


@functools.cache
def columns() -> dict[str, int]:
    """Return each service's column: 0 for the lab's helpers (clients among them), then as a request travels."""
    column = {svc.name: 0 for svc in catalog.SERVICES if svc.runs != "service"}
    column[catalog.entry().name] = 1
    for _ in catalog.SERVICES:  # settles after as many passes as the longest path
        for svc, pool in catalog.pool_holders():
            if pool.holder in column:
                column[svc.name] = max(column.get(svc.name, 0), column[pool.holder] + 1)
        for svc in catalog.lab_services():
            if svc.name in column:
                for dependency in svc.links.values():
                    column[dependency] = max(column.get(dependency, 0), column[svc.name] + 1)
    return column


def _clients() -> str:
    return next(catalog.instance_names(svc)[0] for svc in catalog.SERVICES if svc.runs == "loadgen")


def paths(tiles: list[Tile], rates: dict[str, float]) -> list[Path]:
    """Return every request path between instances on the map, with its rate (absent figures count as 0)."""
    names = {tile.name for tile in tiles}
    entry = catalog.instance_names(catalog.entry())[0]
    found = []
    if entry in names and _clients() in names:
        found.append(Path(_clients(), entry, rates.get("rps", 0.0), rates.get("errors", 0.0)))
    for _svc, pool in POOLS:
        prefix, errors = edge_prefix(pool), edge_error_prefix(pool)
        for key, rate in sorted(rates.items()):
            if not key.startswith(prefix):
                continue
            source, _, target = key[len(prefix) :].partition(EDGE_SEPARATOR)
            if source in names and target in names:
                found.append(Path(source, target, rate, rates.get(errors + source + EDGE_SEPARATOR + target, 0.0)))
    for key, rate in sorted(rates.items()):
        if not key.startswith(CALLS_PREFIX):
            continue
        dependency, _, caller = key[len(CALLS_PREFIX) :].partition(".")
        target = catalog.instance_names(catalog.service(dependency))[0]
        if caller in names and target in names:
            found.append(Path(caller, target, rate))
    return found


def _positions(tiles: list[Tile]) -> dict[str, tuple[float, float]]:
    where = columns()
    stacked: dict[int, list[str]] = {}
    for tile in tiles:
        stacked.setdefault(where.get(tile.service, 0), []).append(tile.name)
    positions = {}
    for column, names in stacked.items():
        for row, name in enumerate(names):
            positions[name] = (float(column), -(row - (len(names) - 1) / 2))
    return positions


def _width(rate: float) -> int:
    """Return a path's line width for its requests a second: 1 when idle, up to 8, growing with the log."""
    return 1 + min(7, round(math.log2(1 + rate)))


def map_figure(tiles: list[Tile], found: list[Path]) -> dict[str, Any]:
    """Return the map as a Plotly figure: a line per path, a marker per instance."""
    at = _positions(tiles)
    # Paths of one width class and colour share a trace (segments split by None), and every label one text
    # trace: a handful of traces to redraw each second, whatever the number of instances.
    groups: dict[tuple[int, bool], dict[str, list[Any]]] = {}
    labels: dict[str, list[Any]] = {"x": [], "y": [], "text": [], "hovertext": [], "color": []}
    for path in found:
        (x0, y0), (x1, y1) = at[path.source], at[path.target]
        failing = path.errors >= FAILING_RATE
        group = groups.setdefault((_width(path.rate), failing), {"x": [], "y": []})
        group["x"] += [x0, x1, None]
        group["y"] += [y0, y1, None]
        labels["x"].append((x0 + x1) / 2)
        labels["y"].append((y0 + y1) / 2)
        labels["text"].append(f"{path.rate:.0f}/s" if path.rate >= 0.5 else "")
        labels["hovertext"].append(path.describe())
        labels["color"].append(FAILING if failing else "#495057")
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": group["x"],
            "y": group["y"],
            "line": {"width": width, "color": FAILING if failing else QUIET},
            "hoverinfo": "skip",
            "name": f"paths {width}{' failing' if failing else ''}",
            "showlegend": False,
        }
        for (width, failing), group in sorted(groups.items())
    ]
    traces.append(
        {
            "type": "scatter",
            "mode": "text",
            "name": "rates",
            "x": labels["x"],
            "y": labels["y"],
            "text": labels["text"],
            "textposition": "top center",
            "textfont": {"size": 10, "color": labels["color"]},
            "hovertext": labels["hovertext"],
            "hoverinfo": "text",
            "showlegend": False,
        }
    )
    names = [tile.name for tile in tiles]
    labels = [_label(tile) for tile in tiles]
    traces.append(
        {
            "type": "scatter",
            "mode": "markers+text",
            "name": "instances",
            "x": [at[name][0] for name in names],
            "y": [at[name][1] for name in names],
            "text": labels,
            "textposition": "bottom center",
            "customdata": [[tile.name, tile.state] for tile in tiles],
            "marker": {"size": 18, "color": [NODE_COLOURS.get(tile.state, QUIET) for tile in tiles]},
            "hovertext": [
                f"{tile.name}: {tile.state}" + (f" · {tile.detail}" if tile.detail else "") for tile in tiles
            ],
            "hoverinfo": "text",
            "showlegend": False,
        }
    )
    invisible = {"visible": False, "fixedrange": True}
    layout = {
        "height": 360,
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "xaxis": {**invisible, "range": [-0.5, max((x for x, _ in at.values()), default=0) + 0.5]},
        "yaxis": invisible,
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"family": "system-ui, sans-serif", "size": 11},
        "uirevision": "traffic-map",
        "clickmode": "event",
    }
    return {"data": traces, "layout": layout}


# A tile's note on a circuit breaker the pools or the gateways opened on the instance.
BREAKER = re.compile(r"breaker (half-open|open)(?: / (?:half-open|open))?")


def _label(tile: Tile) -> str:
    """Return a node's label: its name, and a breaker that is not closed on it."""
    breaker = BREAKER.search(tile.detail)
    return f"{tile.name}<br>{breaker.group(0)}" if breaker else tile.name


def card() -> dbc.Card:
    """Return the map's card: the figure, the node's buttons once one is pressed, and the paths in words."""
    return dbc.Card(
        [
            dbc.CardHeader("Traffic map"),
            dbc.CardBody(
                [
                    dcc.Graph(id="traffic-map", config={"displayModeBar": False}),
                    html.Div(id="map-selected", className="small mb-2"),
                    html.Details(
                        [
                            html.Summary("The paths in words", className="small"),
                            html.Ul(id="map-paths", className="small"),
                        ]
                    ),
                ]
            ),
        ],
        className="mb-3",
    )


def _buttons(tile: Tile) -> Any:
    enabled = ALLOWED.get(tile.process, set())
    return [
        html.Strong(f"{tile.name}: {tile.state} ", className="me-2"),
        *instance_buttons(tile.name, "map-action", enabled),
    ]


def drawn(lab: Lab) -> list[Any]:
    """Return the map's figure and its words (each path, each instance's state) from the Lab's latest sample."""
    tiles = lab.status.tiles
    latest = lab.history.latest()
    found = paths(tiles, latest.values if latest else {})
    words = [html.Li(path.describe()) for path in found] + [
        html.Li(f"{tile.name}: {tile.state}", **{"data-node": tile.name}) for tile in tiles
    ]
    return [map_figure(tiles, found), words]


def register(app: Dash, lab: Lab) -> None:
    """Redraw the map each interval and offer a pressed node's buttons (dashboard/panels/presses.py acts on them)."""

    # Unchanged (an idle stack), the map is not redrawn: Plotly redraws a whole plot for any new figure.
    @ticked(app, [Output("traffic-map", "figure"), Output("map-paths", "children")])
    def draw() -> Any:
        return drawn(lab)

    @app.callback(Output("map-selected", "children"), Input("traffic-map", "clickData"), prevent_initial_call=True)
    def select(click: Any) -> Any:
        try:
            name = click["points"][0]["customdata"][0]
        except (TypeError, KeyError, IndexError):
            return no_update
        tile = next((tile for tile in lab.status.tiles if tile.name == name), None)
        if tile is None:
            return no_update
        try:
            controllable = catalog.service(service_of(tile.name)).controllable
        except catalog.CatalogError:
            controllable = False
        return _buttons(tile) if controllable else f"{tile.name}: {tile.state} (no buttons: it runs the lab)"
