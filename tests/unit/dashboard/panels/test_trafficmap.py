"""The traffic map: columns from the catalog, paths with their live rates, nodes coloured by state."""

from __future__ import annotations

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import Lab
from dashboard.panels import trafficmap
from scalelab.stack import Tile

from .support import Callbacks, ids, text


def tile(name: str, service: str, state: str = "healthy", process: str = "running") -> Tile:
    return Tile(name, service, "http://127.0.0.1:1", state, process)


TILES = [
    tile("loadgen", "loadgen"),
    tile("load-balancer", "load-balancer"),
    tile("gateway-1", "gateway"),
    tile("gateway-2", "gateway", "down", "stopped"),
    Tile(
        "microservice-1",
        "microservice",
        "http://127.0.0.1:1",
        "healthy",
        "running",
        detail="in rotation · breaker open in 1",
    ),
    tile("cache", "cache"),
    tile("database", "database"),
    tile("worker", "worker"),
    tile("prometheus", "prometheus"),
    tile("dashboard", "dashboard"),
]
RATES = {
    "rps": 40.0,
    "errors": 0.0,
    "edge.gateways.load-balancer>gateway-1": 38.0,
    "edge.gateways.load-balancer>gateway-2": 2.0,
    "edge_errors.gateways.load-balancer>gateway-2": 1.5,
    "edge.microservices.gateway-1>microservice-1": 6.0,
    "edge.microservices.gateway-1>microservice-9": 3.0,  # an instance gone since: no node, no path
    "calls.cache.gateway-1": 30.0,
    "calls.database.gateway-1": 3.0,
    "calls.worker.gateway-1": 1.0,
}


def test_columns_follow_the_request_from_the_clients_to_the_dependencies():
    column = trafficmap.columns()
    assert column["loadgen"] == column["prometheus"] == column["dashboard"] == 0
    assert column["load-balancer"] == 1 and column["gateway"] == 2
    assert column["microservice"] == column["cache"] == column["database"] == column["worker"] == 3


def test_paths_carry_their_rates_and_failures_between_instances_on_the_map():
    found = {(p.source, p.target): p for p in trafficmap.paths(TILES, RATES)}
    assert set(found) == {
        ("loadgen", "load-balancer"),
        ("load-balancer", "gateway-1"),
        ("load-balancer", "gateway-2"),
        ("gateway-1", "microservice-1"),
        ("gateway-1", "cache"),
        ("gateway-1", "database"),
        ("gateway-1", "worker"),
    }
    assert found[("load-balancer", "gateway-1")].rate == 38.0
    assert found[("load-balancer", "gateway-2")].describe() == "load-balancer → gateway-2: 2.0 req/s, 1.5 failing/s"
    assert found[("gateway-1", "cache")].describe() == "gateway-1 → cache: 30.0 req/s"


def test_the_figure_draws_a_node_per_instance_coloured_by_state_and_a_line_per_path():
    found = trafficmap.paths(TILES, RATES)
    figure = trafficmap.map_figure(TILES, found)
    nodes = figure["data"][-1]
    assert [name for name, _state in nodes["customdata"]] == [t.name for t in TILES]
    assert nodes["text"][4] == "microservice-1<br>breaker open"  # a breaker that is not closed shows on the node
    colours = dict(zip([t.name for t in TILES], nodes["marker"]["color"], strict=True))
    assert colours["gateway-2"] == trafficmap.NODE_COLOURS["down"] != colours["gateway-1"]
    rates = next(trace for trace in figure["data"] if trace["name"] == "rates")
    assert len(rates["text"]) == len(found)
    described = dict(zip(rates["hovertext"], rates["text"], strict=True))
    assert described["load-balancer → gateway-1: 38.0 req/s"] == "38/s"
    failing = [trace for trace in figure["data"] if trace["name"].endswith("failing")]
    assert len(failing) == 1 and failing[0]["line"]["color"] == trafficmap.FAILING
    assert failing[0]["x"] == [1.0, 2.0, None]  # load-balancer (column 1) to gateway-2 (column 2)
    widths = {trace["line"]["width"] for trace in figure["data"] if trace["name"].startswith("paths")}
    assert min(widths) < max(widths) <= 8  # 38 req/s draws wider than 1 req/s


def test_an_empty_stack_is_an_empty_map():
    figure = trafficmap.map_figure([], [])
    assert figure["data"][-1]["x"] == [] and trafficmap.paths([], RATES) == []


def test_each_interval_the_map_and_its_words_are_redrawn(app: Dash, lab: Lab):
    lab.status.tiles = TILES
    register_panels(app, lab, [trafficmap])
    shown = Callbacks(app).fire("tick", "n_intervals", 1, output="traffic-map")
    words = text(shown["map-paths.children"])
    assert "gateway-2: down" in words
    assert shown["traffic-map.figure"]["data"][-1]["customdata"][3] == ["gateway-2", "down"]


def test_pressing_a_node_offers_its_buttons_and_they_act(app: Dash, lab: Lab):
    lab.status.tiles = TILES
    register_panels(app, lab, [trafficmap])
    callbacks = Callbacks(app)
    click = {"points": [{"customdata": ["gateway-2", "down"]}]}
    shown = callbacks.fire("traffic-map", "clickData", click)
    buttons = shown["map-selected.children"]
    assert "gateway-2: down" in text(buttons)
    assert '"action": "start"' in text(buttons)
    shown = callbacks.fire("traffic-map", "clickData", {"points": [{"customdata": ["dashboard", "healthy"]}]})
    assert "no buttons" in text(shown["map-selected.children"])  # the page does not kill itself
    assert callbacks.fire("traffic-map", "clickData", {"points": []}) is None


def test_the_card_has_the_map_and_its_words():
    assert ids(trafficmap.card()) == ["traffic-map", "map-selected", "map-paths"]
