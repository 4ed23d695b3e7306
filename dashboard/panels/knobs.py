"""The knobs panel: a row per knob of the catalog the page shows, grouped by service, and their callbacks.

Everything is generated from :data:`dashboard.lab.KNOBS`: a switch or a choice is set as soon as
it changes; a number is set by its ``apply-<key>`` button. A knob set on every instance shows the
current value beside it (``now-<key>``); a per-instance knob is set on the instance picked in
``knob-instance-<service>``, whose options are that service's tiles.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html, no_update

from dashboard.changes import ticked
from dashboard.lab import KNOBS, Knob, Lab
from dashboard.panels.fields import number_field
from scalelab import catalog

__all__ = [
    "card",
    "control_id",
    "instance_picker_id",
    "knob_blocks",
    "knob_text",
    "needs_apply",
    "register",
]

SELECT = {"size": "sm", "style": {"width": "14rem"}}


def control_id(knob: Knob) -> str:
    """Return the id of a knob's control."""
    return f"knob-{knob.key}"


def instance_picker_id(service: str) -> str:
    """Return the id of the select picking which instance of ``service`` per-instance knobs are set on."""
    return f"knob-instance-{service}"


def needs_apply(knob: Knob) -> bool:
    """Return whether a knob is set by an apply button (numbers: half-typed values must not be sent)."""
    return knob.spec.kind == "number"


def knob_blocks() -> list[tuple[str, list[Knob], list[Knob]]]:
    """Return ``(service, knobs for all its instances, knobs per chosen instance)``, in the order a request travels."""
    blocks = []
    for svc in reversed(catalog.lab_services()):
        knobs = [knob for knob in KNOBS.values() if knob.service == svc.name]
        shared = [knob for knob in knobs if not knob.spec.per_instance]
        single = [knob for knob in knobs if knob.spec.per_instance]
        if knobs:
            blocks.append((svc.name, shared, single))
    return blocks


def _per_instance_services() -> list[str]:
    return [service for service, _shared, single in knob_blocks() if single]


def _shared_knobs() -> list[Knob]:
    return [knob for _service, shared, _single in knob_blocks() for knob in shared]


def _knob_control(knob: Knob, value: Any) -> Any:
    """Return the control for a knob, showing ``value`` (its default when None)."""
    spec = knob.spec
    value = spec.default if value is None else value
    if spec.kind == "switch":
        return dbc.Switch(id=control_id(knob), value=bool(value))
    if spec.kind == "choice":
        options = [{"label": choice.replace("_", " "), "value": choice} for choice in spec.choices]
        return dbc.Select(id=control_id(knob), options=options, value=value, **SELECT)
    return number_field(control_id(knob), value, spec.step, spec.minimum, spec.maximum)


def _knob_row(knob: Knob, value: Any, now: bool) -> dbc.Row:
    cells = [dbc.Col(dbc.Label(knob.label, size="sm"), width=5), dbc.Col(_knob_control(knob, value), width="auto")]
    if needs_apply(knob):
        button = dbc.Button("apply", id=f"apply-{knob.key}", size="sm", color="primary", outline=True)
        cells.append(dbc.Col(button, width="auto"))
    if now:
        cells.append(dbc.Col(html.Span(id=f"now-{knob.key}", className="small text-muted"), width="auto"))
    return dbc.Row(cells, className="g-2 mb-1 align-items-center")


def _picker_row(service: str) -> dbc.Row:
    picker = dbc.Select(id=instance_picker_id(service), options=[], placeholder=f"pick a {service}", **SELECT)
    cells = [dbc.Col(dbc.Label(service.capitalize(), size="sm"), width=5), dbc.Col(picker, width="auto")]
    return dbc.Row(cells, className="g-2 mb-1 align-items-center")


def card(lab: Lab) -> dbc.Card:
    """Return the knobs card, its controls starting from the values the Lab read last (else the defaults)."""
    current = lab.status.knobs
    rows: list[Any] = []
    for service, shared, single in knob_blocks():
        rows += [_knob_row(knob, current.get(knob.key), now=True) for knob in shared]
        if single:
            # Per-instance knobs start from their defaults: their value differs from one instance to the next.
            rows += [html.Hr(className="my-2"), _picker_row(service)]
            rows += [_knob_row(knob, None, now=False) for knob in single]
    return dbc.Card([dbc.CardHeader("Knobs"), dbc.CardBody(rows)], className="mb-3 h-100")


def knob_text(value: Any) -> str:
    """Return a knob's value as the page shows it (on/off, words for names)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).replace("_", " ")


def _set(lab: Lab, knob: Knob, value: Any, instance: str | None) -> str:
    """Set ``knob`` through the Lab; return the logged action's label."""
    if knob.spec.per_instance and not instance:
        action = lab.actions.begin("knob", knob.service, knob.knob)
        lab.actions.finish(action, False, f"pick the {knob.service} instance first")
        return action.label
    return lab.set_knob(knob.key, value, instance).label


def _on_change(app: Dash, lab: Lab, knob: Knob) -> None:
    states = [State(instance_picker_id(knob.service), "value")] if knob.spec.per_instance else []

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input(control_id(knob), "value"),
        *states,
        prevent_initial_call=True,
    )
    def changed(value: Any, instance: str | None = None) -> Any:
        return _set(lab, knob, value, instance)


def _on_apply(app: Dash, lab: Lab, knob: Knob) -> None:
    states = [State(control_id(knob), "value")]
    if knob.spec.per_instance:
        states.append(State(instance_picker_id(knob.service), "value"))

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input(f"apply-{knob.key}", "n_clicks"),
        *states,
        prevent_initial_call=True,
    )
    def applied(_n: int, value: Any, instance: str | None = None) -> Any:
        if value in (None, ""):
            return no_update  # an empty or invalid number: nothing to set
        return _set(lab, knob, float(value), instance)


def register(app: Dash, lab: Lab) -> None:
    """Wire every knob of the page to ``lab``, the current values and the instance pickers' options."""
    for knob in KNOBS.values():
        (_on_apply if needs_apply(knob) else _on_change)(app, lab, knob)
    shared = _shared_knobs()
    pickers = _per_instance_services()
    if not shared and not pickers:
        return

    @ticked(
        app,
        [Output(f"now-{knob.key}", "children") for knob in shared]
        + [Output(instance_picker_id(service), "options") for service in pickers],
    )
    def current() -> Any:
        status = lab.status
        nows = [f"now: {knob_text(status.knobs[k.key])}" if k.key in status.knobs else "" for k in shared]
        options = [
            [{"label": tile.name, "value": tile.name} for tile in status.tiles if tile.service == service]
            for service in pickers
        ]
        return [*nows, *options]
