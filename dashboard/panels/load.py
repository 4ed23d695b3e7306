"""The load panel: the load engine's form (users, rate, duration, mix), its start and stop, and its state."""

from __future__ import annotations

import math
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html

from dashboard.changes import ticked
from dashboard.lab import Lab
from dashboard.panels.fields import number_field as _number
from scalelab.load.engine import MIX_OPTIONS, LoadPlan

__all__ = ["card", "load_status", "plan_from_form", "register"]

PLAN = LoadPlan()


MODEL_LABELS = {
    "closed": "closed: each user waits for its answer",
    "open": "open: requests go out when due, answered or not",
}
SHAPE_LABELS = {
    "constant": "constant rate",
    "ramp": "ramp: target to peak over the duration",
    "steps": "steps: target to peak in 4 steps",
    "spike": "spike: peak through the middle fifth",
}


def _select(id_: str, labels: dict[str, str], value: str) -> dbc.Select:
    options = [{"label": label, "value": name} for name, label in labels.items()]
    return dbc.Select(id=id_, options=options, value=value, size="sm")


def card() -> dbc.Card:
    """Return the load card, its fields filled with the load engine's defaults."""
    mix = [
        ("mix_data_hot", "/data, hot keys", PLAN.mix_data_hot),
        ("mix_data_new", "/data, new keys", PLAN.mix_data_new),
        ("mix_process", "/process", PLAN.mix_process),
        ("mix_longtask", "/longtask", PLAN.mix_longtask),
    ]
    return dbc.Card(
        [
            dbc.CardHeader("Load"),
            dbc.CardBody(
                [
                    dbc.Row(
                        [
                            dbc.Col([dbc.Label("Users", size="sm"), _number("load-users", PLAN.users, minimum=1)]),
                            dbc.Col([dbc.Label("Target req/s (0 = max)", size="sm"), _number("load-rate", PLAN.rate)]),
                            dbc.Col([dbc.Label("Duration s (0 = until stop)", size="sm"), _number("load-duration", 0)]),
                            dbc.Col([dbc.Label("Hot keys", size="sm"), _number("load-hot-keys", PLAN.hot_keys, 1, 1)]),
                        ],
                        className="g-2",
                    ),
                    dbc.Row(
                        [
                            dbc.Col([dbc.Label("Model", size="sm"), _select("load-model", MODEL_LABELS, PLAN.model)]),
                            dbc.Col([dbc.Label("Shape", size="sm"), _select("load-shape", SHAPE_LABELS, PLAN.shape)]),
                            dbc.Col([dbc.Label("Peak req/s (shapes)", size="sm"), _number("load-peak-rate", 0)]),
                        ],
                        className="g-2 mt-1",
                    ),
                    dbc.Label("Mix (weights)", size="sm", className="mt-2"),
                    dbc.Row(
                        [dbc.Col([dbc.Label(text, size="sm"), _number(f"load-{k}", value)]) for k, text, value in mix],
                        className="g-2",
                    ),
                    html.Div(
                        [
                            dbc.Button("Start load", id="load-start", color="success", size="sm", className="me-2"),
                            dbc.Button("Stop load", id="load-stop", color="danger", size="sm", outline=True),
                        ],
                        className="mt-2",
                    ),
                    html.Div(id="load-status", className="small mt-2"),
                    html.Div(
                        "A target rate of 0 sends as fast as the stack answers: on a small machine that takes "
                        "every core, this page included.",
                        className="small text-muted mt-1",
                    ),
                ]
            ),
        ],
        className="mb-3 h-100",
    )


def load_status(load: dict[str, Any], problem: str) -> Any:
    """Return the load engine's state in one line (users, req/s, failures, p95), or why it cannot be read."""
    if problem:
        return dbc.Alert(problem, color="warning", className="py-1 mb-0")
    if not load:
        return ""
    state = load.get("state", "?")
    p95 = (load.get("current_response_time_percentiles") or {}).get("response_time_percentile_0.95")
    parts = [
        f"load engine: {state}",
        f"{load.get('user_count', 0)} users",
        f"{load.get('current_rps', 0):.0f} req/s",
        f"failures {100 * load.get('fail_ratio', 0):.1f} %",
    ]
    if p95:
        parts.append(f"p95 {p95:.0f} ms")
    return html.Span(" · ".join(parts), id="load-state", **{"data-state": state})


def plan_from_form(
    users: Any,
    rate: Any,
    duration: Any,
    hot_keys: Any,
    *mix: Any,
    model: Any = "closed",
    shape: Any = "constant",
    peak_rate: Any = 0,
) -> LoadPlan:
    """Return the plan the form describes (an empty field counts as 0); raise ValueError for a field that is
    not a number or a choice the form offers (the browser may send anything), naming the field."""

    def number(value: Any, kind: type, field: str = "") -> Any:
        if value in (None, ""):
            return kind(0)
        try:
            parsed = float(value)
            if isinstance(value, bool) or not math.isfinite(parsed) or (kind is int and parsed != int(parsed)):
                raise ValueError
            return kind(parsed)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{field or 'a load field'} must be a {'whole ' if kind is int else ''}number") from None

    def choice(value: Any, labels: dict[str, str], field: str) -> str:
        if value in (None, ""):
            return next(iter(labels))
        if not isinstance(value, str) or value not in labels:
            raise ValueError(f"{field} is one of {', '.join(labels)}")
        return value

    return LoadPlan(
        users=number(users, int, "users"),
        rate=number(rate, float, "target req/s"),
        duration=number(duration, int, "duration"),
        hot_keys=number(hot_keys, int, "hot keys"),
        **{option: number(value, int, option) for option, value in zip(MIX_OPTIONS, mix, strict=True)},
        model=choice(model, MODEL_LABELS, "the load model"),
        shape=choice(shape, SHAPE_LABELS, "the shape"),
        peak_rate=number(peak_rate, float, "peak req/s"),
    )


def register(app: Dash, lab: Lab) -> None:
    """Wire the load card to ``lab``: its state each interval, Start and Stop as actions."""

    @ticked(app, [Output("load-status", "children")])
    def status() -> Any:
        return [load_status(lab.status.load, lab.status.load_problem)]

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input("load-start", "n_clicks"),
        State("load-users", "value"),
        State("load-rate", "value"),
        State("load-duration", "value"),
        State("load-hot-keys", "value"),
        State("load-model", "value"),
        State("load-shape", "value"),
        State("load-peak-rate", "value"),
        [State(f"load-{option}", "value") for option in MIX_OPTIONS],
        prevent_initial_call=True,
    )
    def load_start(
        _n: int, users: Any, rate: Any, duration: Any, hot_keys: Any, model: Any, shape: Any, peak: Any, *mix: Any
    ) -> Any:
        try:
            plan = plan_from_form(users, rate, duration, hot_keys, *mix, model=model, shape=shape, peak_rate=peak)
        except ValueError as exc:
            return lab.refuse("load-start", str(exc), target="loadgen").label
        return lab.start_load(plan).label

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input("load-stop", "n_clicks"),
        prevent_initial_call=True,
    )
    def load_stop(_n: int) -> Any:
        return lab.stop_load().label
