"""The topology panel: rows from the catalog, a tile per instance, its buttons and its line of figures."""

from __future__ import annotations

import json

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import INSTANCE_ACTIONS, Lab
from dashboard.panels import topology
from scalelab import catalog
from scalelab.stack import Tile

from .support import Callbacks, ids, text


def tile(name: str, state: str = "healthy", process: str = "running", **extra) -> Tile:
    """Return the tile of instance ``name`` on 127.0.0.1."""
    return Tile(name, catalog.service_of(name), "http://127.0.0.1:1", state, process, **extra)


def test_tiers_list_every_service_once_from_the_entry_to_the_helpers():
    rows = topology.tiers()
    services = [name for _title, names in rows for name in names]
    assert sorted(services) == sorted(svc.name for svc in catalog.SERVICES)
    assert rows[0] == (catalog.entry().title, [catalog.entry().name])
    assert services.index("gateway") < services.index("microservice") < services.index("database")
    assert all(svc.runs != "service" for svc in catalog.SERVICES if svc.name in rows[-1][1])


def test_a_tile_has_the_instance_buttons_only_when_its_service_is_controllable():
    for svc in catalog.SERVICES:
        name = catalog.instance_names(svc)[0]
        buttons = [
            i for i in ids(topology.tile_card(tile(name))) if isinstance(i, dict) and i["type"] == "instance-action"
        ]
        expected = list(INSTANCE_ACTIONS) if svc.controllable else []
        assert [b["action"] for b in buttons] == expected, svc.name
        assert all(b["name"] == name for b in buttons)


def test_a_tile_carries_its_instance_name_for_the_page_and_its_tests():
    card = topology.tile_card(tile("gateway-2")).to_plotly_json()
    assert card["props"]["data-instance"] == "gateway-2"
    assert {"type": "tile-state", "name": "gateway-2"} in ids(topology.tile_card(tile("gateway-2")))


def test_the_tile_line_shows_what_its_pool_sends_it():
    rates = {"split.gateways.gateway-1": 12.4, "split.microservices.microservice-3": 3.0}
    assert topology.tile_detail(tile("gateway-1", in_flight=2), rates) == "12 req/s · 2 in flight"
    assert topology.tile_detail(tile("microservice-3"), rates) == "3 req/s"
    assert topology.tile_detail(tile("database", detail="sqlite"), rates) == "sqlite"
    assert set(topology.SPLITS) == {svc.name for svc in catalog.balanced()}


def test_the_card_has_add_and_remove_for_each_service_that_scales():
    scale = [i for i in ids(topology.card()) if isinstance(i, dict) and i["type"] == "scale"]
    assert scale == [
        {"type": "scale", "service": service, "direction": direction}
        for service in catalog.scalable()
        for direction in ("out", "in")
    ]


def test_without_a_stack_the_topology_says_how_to_start_one(app: Dash, lab: Lab):
    register_panels(app, lab, [topology])
    shown = Callbacks(app).fire("instance-names", "data", [])
    assert "No stack is running" in text(shown["topology.children"])


def test_tiles_are_drawn_row_by_row_in_the_order_a_request_travels(app: Dash, lab: Lab):
    lab.status.tiles = [tile("database"), tile("gateway-1"), tile("load-balancer")]
    register_panels(app, lab, [topology])
    shown = text(Callbacks(app).fire("instance-names", "data", ["database", "gateway-1", "load-balancer"]))
    assert shown.index('"load-balancer"') < shown.index('"gateway-1"') < shown.index('"database"')


def test_the_instance_names_store_changes_only_when_the_instances_do(app: Dash, lab: Lab):
    lab.status.tiles = [tile("gateway-1")]
    register_panels(app, lab, [topology])
    callbacks = Callbacks(app)
    fire = {"input_id": "tick", "prop": "n_intervals", "value": 3, "output": "instance-names"}
    assert callbacks.fire(**fire, state={"instance-names": None}) == {"instance-names.data": ["gateway-1"]}
    assert callbacks.fire(**fire, state={"instance-names": ["gateway-1"]}) is None


def test_each_interval_tiles_show_their_state_figures_and_the_buttons_that_make_sense(app: Dash, lab: Lab):
    lab.status.tiles = [tile("gateway-1", in_flight=1), tile("gateway-2", "down", "stopped")]
    register_panels(app, lab, [topology])
    (key,) = [key for key in app.callback_map if "tile-detail" in key]
    names = ["gateway-1", "gateway-2", "gateway-3"]  # gateway-3's tile is still drawn, its instance gone
    presses = [("gateway-1", "kill"), ("gateway-1", "start"), ("gateway-2", "start"), ("gateway-2", "pause")]

    def each(type_: str, prop: str) -> list[dict]:
        return [{"id": {"type": type_, "name": name}, "property": prop} for name in names]

    buttons = [
        {"id": {"type": "instance-action", "action": action, "name": name}, "property": "disabled"}
        for name, action in presses
    ]

    def showing(outputs: list[dict], values: list) -> list[dict]:
        return [{**output, "value": value} for output, value in zip(outputs, values, strict=True)]

    # What the page shows before this interval: freshly drawn tiles.
    state = [
        showing(each("tile-state", "children"), ["…"] * 3),
        showing(each("tile-state", "color"), ["secondary"] * 3),
        showing(each("tile-detail", "children"), [""] * 3),
        showing(buttons, [False] * 4),
    ]
    body = {
        "output": key,
        "outputs": [
            each("tile-state", "children"),
            each("tile-state", "color"),
            each("tile-detail", "children"),
            buttons,
        ],
        "inputs": [
            {"id": "tick", "property": "n_intervals", "value": 1},
            {"id": "topology", "property": "children", "value": None},
            {"id": "action-sink", "property": "children", "value": None},
        ],
        "state": state,
        "changedPropIds": ["tick.n_intervals"],
    }
    client = Callbacks(app).client
    answer = client.post("/_dash-update-component", json=body).get_json()["response"]

    def shown(type_: str, name: str, prop: str, **extra: str):
        key = json.dumps({"name": name, **extra, "type": type_}, separators=(",", ":"), sort_keys=True)
        return answer.get(key, {}).get(prop, "(not sent)")

    assert [shown("tile-state", n, "children") for n in names] == ["healthy", "down", "gone"]
    # Only what changed is sent: gateway-3 is grey already, and two buttons were already enabled.
    assert [shown("tile-state", n, "color") for n in names] == ["success", "danger", "(not sent)"]
    assert [shown("tile-detail", n, "children") for n in names] == ["1 in flight", "(not sent)", "(not sent)"]
    assert [shown("instance-action", n, "disabled", action=a) for n, a in presses] == [
        "(not sent)",
        True,
        "(not sent)",
        True,
    ]

    # The next interval, with the page showing what it was sent: nothing to redraw.
    body["state"] = [
        showing(each("tile-state", "children"), ["healthy", "down", "gone"]),
        showing(each("tile-state", "color"), ["success", "danger", "secondary"]),
        showing(each("tile-detail", "children"), ["1 in flight", "", ""]),
        showing(buttons, [False, True, False, True]),
    ]
    again = client.post("/_dash-update-component", json=body)
    assert again.status_code == 204 or not again.get_json().get("response")


def test_each_tile_shows_what_its_instance_costs():
    rates = {"split.gateways.gateway-1": 12.0, "cpu.gateway-1": 37.4, "memory.gateway-1": 61.2 * 2**20}
    rates["cpu.cache"] = 3.0
    assert topology.tile_detail(tile("gateway-1"), rates) == "12 req/s · 37% CPU · 61 MB"
    assert topology.tile_detail(tile("cache"), rates) == "3% CPU"  # memory not read yet


def test_in_a_container_the_tile_shows_the_engines_figures_against_the_containers_limits():
    rates = {"cpu.gateway-1": 37.4, "memory.gateway-1": 61.2 * 2**20}  # the process's own figures
    rates |= {"container.cpu.gateway-1": 21.0, "container.cpu_limit.gateway-1": 0.5}  # 21% of one core
    rates |= {"container.memory.gateway-1": 180.4 * 2**20, "container.memory_limit.gateway-1": 256 * 2**20}
    assert topology.tile_detail(tile("gateway-1"), rates) == "CPU 42% of 0.5 core · 180 of 256 MB"
    rates["container.cpu_limit.gateway-1"] = 2.0
    assert topology.costs("gateway-1", rates)[0] == "CPU 10% of 2 cores"


def test_a_container_without_limits_shows_what_the_engine_counts_for_it():
    rates = {"cpu.loadgen": 3.0, "container.cpu.loadgen": 55.0, "container.memory.loadgen": 90 * 2**20}
    assert topology.costs("loadgen", rates) == ["55% CPU", "90 MB"]
    # Figures the engine has not sent yet: the process's own, as before.
    assert topology.costs("loadgen", {"cpu.loadgen": 3.0, "memory.loadgen": 40 * 2**20}) == ["3% CPU", "40 MB"]
