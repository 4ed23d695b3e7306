"""Helpers of the panels' tests: fire a callback as the browser does, and read what a layout holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dash import Dash

from dashboard.actionlog import Action, ActionLog
from dashboard.lab import LabStatus

UPDATE = "/_dash-update-component"


def _outputs(key: str) -> tuple[list[dict[str, Any]], bool]:
    """Return the outputs a callback key names, and whether it has several (``..a.b...c.d..``)."""
    multi = key.startswith("..")
    parts = key[2:-2].split("...") if multi else [key]
    outputs = []
    for part in parts:
        id_, prop = part.rsplit(".", 1)
        outputs.append({"id": json.loads(id_) if id_.startswith("{") else id_, "property": prop})
    return outputs, multi


class Callbacks:
    """An app's callbacks, fired through its Flask server with the request the browser sends."""

    def __init__(self, app: Dash) -> None:
        self.app = app
        self.client = app.server.test_client()
        self.client.get("/")  # the first request builds Dash's routes

    def keys(self, input_id: str, prop: str) -> list[str]:
        """Return the keys of the callbacks that ``input_id.prop`` fires."""
        return [
            key
            for key, callback in self.app.callback_map.items()
            if any(i["id"] == input_id and i["property"] == prop for i in callback["inputs"])
        ]

    def fire(
        self,
        input_id: str,
        prop: str,
        value: Any,
        state: dict[str, Any] | None = None,
        output: str = "",
    ) -> dict[str, Any] | None:
        """Fire the callback of ``input_id.prop`` (the one whose outputs name ``output``, when several are)
        with ``value`` and ``state`` (id -> value).

        Return its outputs as ``{"id.property": value}``, or None when it changed nothing.
        """
        (key,) = [key for key in self.keys(input_id, prop) if output in key]
        callback = self.app.callback_map[key]
        outputs, multi = _outputs(key)
        body = {
            "output": key,
            "outputs": outputs if multi else outputs[0],
            "inputs": [
                {**i, "value": value if (i["id"], i["property"]) == (input_id, prop) else None}
                for i in callback["inputs"]
            ],
            "state": [{**s, "value": (state or {}).get(s["id"])} for s in callback["state"]],
            "changedPropIds": [f"{input_id}.{prop}"],
        }
        response = self.client.post(UPDATE, json=body)
        if response.status_code == 204:
            return None
        assert response.status_code == 200, response.get_data(as_text=True)
        answer = response.get_json().get("response")
        if not answer:  # every output no_update
            return None
        return {f"{id_}.{p.split('@')[0]}": v for id_, props in answer.items() for p, v in props.items()}


def components(layout: Any) -> Iterator[Any]:
    """Yield every component of a layout, depth first."""
    if isinstance(layout, (list, tuple)):
        for child in layout:
            yield from components(child)
        return
    if not hasattr(layout, "to_plotly_json"):
        return
    yield layout
    yield from components(getattr(layout, "children", None))


def ids(layout: Any) -> list[Any]:
    """Return the ids of a layout's components, in order (pattern ids as dicts)."""
    return [c.id for c in components(layout) if getattr(c, "id", None) is not None]


def text(layout: Any) -> str:
    """Return a layout as JSON, to look for words and addresses in it."""
    return json.dumps(layout, default=lambda component: component.to_plotly_json())


@dataclass
class KnobCall:
    """One knob the panel asked the Lab to set."""

    key: str
    value: Any
    instance: str | None


@dataclass
class RecordingLab:
    """Stands in for the Lab where a panel's actions must not reach a stack: records knob settings."""

    actions: ActionLog
    status: LabStatus = field(default_factory=LabStatus)
    knob_calls: list[KnobCall] = field(default_factory=list)

    def set_knob(self, key: str, value: Any, instance: str | None = None) -> Action:
        """Record the call and log it as the Lab would."""
        self.knob_calls.append(KnobCall(key, value, instance))
        return self.actions.begin("knob", instance or key.partition("__")[0], f"{key}={value}")
