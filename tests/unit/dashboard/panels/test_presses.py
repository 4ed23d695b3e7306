"""A press on an instance's button answers once its action is done, with the tiles' states and the map."""

from __future__ import annotations

import json

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import Lab
from dashboard.panels import presses
from scalelab import catalog
from scalelab.stack import Tile

from .support import Callbacks


def tile(name: str, state: str = "healthy", process: str = "running") -> Tile:
    """Return the tile of instance ``name`` on 127.0.0.1."""
    return Tile(name, catalog.service_of(name), "http://127.0.0.1:1", state, process)


def test_a_press_answers_with_the_tiles_states_after_its_action(app: Dash, lab: Lab, monkeypatch):
    lab.status.tiles = [tile("gateway-1"), tile("gateway-2")]

    def kill(kind: str, name: str):
        # As a finished kill leaves the Lab: its tile says down before any new sample.
        lab.status.tiles = [tile("gateway-1"), tile("gateway-2", "down", "stopped")]
        return lab.actions.finish(lab.actions.begin(kind, name), True, f"{name} killed")

    monkeypatch.setattr(lab, "instance_action", kill)
    register_panels(app, lab, [presses])
    (key,) = [key for key in app.callback_map if "instance-action" in str(app.callback_map[key]["inputs"])]
    names = ["gateway-1", "gateway-2"]
    press = {"id": {"type": "instance-action", "action": "kill", "name": "gateway-2"}, "property": "n_clicks"}
    body = {
        "output": key,
        "outputs": [
            {"id": "action-sink", "property": "children"},
            [{"id": {"type": "tile-state", "name": n}, "property": "children"} for n in names],
            [{"id": {"type": "tile-state", "name": n}, "property": "color"} for n in names],
            {"id": "traffic-map", "property": "figure"},
            {"id": "map-paths", "property": "children"},
        ],
        "inputs": [[{**press, "value": 1}]],
        "changedPropIds": [json.dumps(press["id"], separators=(",", ":"), sort_keys=True) + ".n_clicks"],
    }
    answer = Callbacks(app).client.post("/_dash-update-component", json=body).get_json()["response"]
    assert answer["action-sink"]["children"] == "kill gateway-2"
    state = json.dumps({"name": "gateway-2", "type": "tile-state"}, separators=(",", ":"), sort_keys=True)
    assert answer[state] == {"children": "down", "color": "danger"}
    # The map too: gateway-2's node and its line in the words say down.
    assert "gateway-2: down" in json.dumps(answer["map-paths"]["children"])
    assert answer["traffic-map"]["figure"]["data"]
