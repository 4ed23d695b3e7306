"""The page: topology tiles, load, knobs, live charts, the failover table, the action log, Grafana.

Only structure lives here; what fills it each second is in :mod:`.callbacks`.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from services.kit.algorithms import ALGORITHMS

from .charts import CHARTS
from .lab import INSTANCE_ACTIONS, KNOBS, Lab
from .loadengine import LoadPlan
from .stack import Tile

__all__ = ["STATE_COLOURS", "TIERS", "WINDOWS", "page", "tile_card"]

STATE_COLOURS = {"healthy": "success", "down": "danger", "paused": "warning", "starting": "info", "stopped": "danger"}
# Rows of the topology, in the order a request travels.
TIERS = (
    ("Entry", ("load-balancer",)),
    ("Gateways", ("gateway",)),
    ("Microservices", ("microservice",)),
    ("Data and async", ("cache", "database", "worker")),
    ("Around the stack", ("loadgen", "prometheus", "dashboard", "grafana")),
)
WINDOWS = {"1 min": 60, "5 min": 300, "15 min": 900, "1 hour": 3600}
PLAN = LoadPlan()


def _number(id_: str, value: float, step: float = 1, minimum: float = 0, width: str = "6rem") -> dbc.Input:
    return dbc.Input(id=id_, type="number", value=value, step=step, min=minimum, size="sm", style={"width": width})


def tile_card(tile: Tile) -> html.Div:
    """Return the card of one instance: name, state, load, and its buttons."""
    buttons = [
        dbc.Button(
            action,
            id={"type": "instance-action", "action": action, "name": tile.name},
            size="sm",
            color="secondary",
            outline=True,
            className="me-1",
        )
        for action in INSTANCE_ACTIONS
    ]
    controllable = tile.service not in ("dashboard",)
    card = dbc.Card(
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
                html.Div(buttons if controllable else [], className="mt-1"),
            ],
            className="p-2",
        ),
        id={"type": "tile", "name": tile.name},
        className="tile me-2 mb-2",
    )
    return html.Div(card, **{"data-instance": tile.name})


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


def _topology() -> dbc.Card:
    scale = [
        html.Span(
            [html.Span(f"{service}s:", className="me-1"), _scale_button(service, "out"), _scale_button(service, "in")]
        )
        for service in ("gateway", "microservice")
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


def _load() -> dbc.Card:
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


def _knob_row(label: str, control: Any, apply: str | None = None, now: str | None = None) -> dbc.Row:
    cells = [dbc.Col(dbc.Label(label, size="sm"), width=5), dbc.Col(control, width="auto")]
    if apply:
        cells.append(dbc.Col(dbc.Button("apply", id=apply, size="sm", color="primary", outline=True), width="auto"))
    if now:
        cells.append(dbc.Col(html.Span(id=now, className="small text-muted"), width="auto"))
    return dbc.Row(cells, className="g-2 mb-1 align-items-center")


def _knobs(lab: Lab) -> dbc.Card:
    knobs = lab.status.knobs
    algorithms = [{"label": name.replace("_", " "), "value": name} for name in ALGORITHMS]
    select = {"size": "sm", "style": {"width": "14rem"}}

    def switch(key: str) -> dbc.Row:
        return _knob_row(KNOBS[key].label, dbc.Switch(id=f"knob-{key}", value=knobs.get(key, True)), now=f"now-{key}")

    def choice(key: str) -> dbc.Row:
        control = dbc.Select(id=f"knob-{key}", options=algorithms, value=knobs.get(key, "round_robin"), **select)
        return _knob_row(KNOBS[key].label, control, now=f"now-{key}")

    def number(key: str, default: float, step: float, now: bool = True) -> dbc.Row:
        control = _number(f"knob-{key}", knobs.get(key, default), step=step)
        return _knob_row(KNOBS[key].label, control, apply=f"apply-{key}", now=f"now-{key}" if now else None)

    rows = [
        switch("cache_enabled"),
        number("cache_ttl", 30, 0.5),
        switch("coalescing"),
        choice("lb_algorithm"),
        choice("ms_algorithm"),
        number("db_latency", 50, 5),
        number("db_error_rate", 0, 0.05),
        html.Hr(className="my-2"),
        _knob_row("Microservice", dbc.Select(id="knob-ms-instance", options=[], **select)),
        number("ms_latency", 0, 10, now=False),
        number("ms_error_rate", 0, 0.05, now=False),
    ]
    return dbc.Card([dbc.CardHeader("Knobs"), dbc.CardBody(rows)], className="mb-3 h-100")


def _charts() -> dbc.Card:
    graphs = [
        dbc.Col(dcc.Graph(id=f"chart-{chart.id}", config={"displaylogo": False}, className="chart"), lg=6)
        for chart in CHARTS
    ]
    window = dbc.RadioItems(
        id="window",
        options=[{"label": label, "value": seconds} for label, seconds in WINDOWS.items()],
        value=WINDOWS["5 min"],
        inline=True,
        className="small",
    )
    return dbc.Card(
        [
            dbc.CardHeader(html.Div([html.Span("Live", className="me-auto"), window], className="d-flex")),
            dbc.CardBody(dbc.Row(graphs, className="g-2")),
        ],
        className="mb-3",
    )


def _experiments(lab: Lab) -> dbc.Card:
    try:
        experiments = lab.experiments()
    except Exception as exc:  # a broken experiment file must not take the page down
        return dbc.Card([dbc.CardHeader("Experiments"), dbc.CardBody(dbc.Alert(str(exc), color="danger"))])
    options = [{"label": f"{name}: {description}", "value": name} for name, description in experiments]
    controls = html.Div(
        [
            dbc.Select(
                id="experiment-name",
                options=options,
                value=experiments[0][0] if experiments else None,
                size="sm",
                className="me-2",
            ),
            dbc.Button("Run", id="experiment-run", color="primary", size="sm"),
        ],
        className="d-flex mb-2",
    )
    progress = html.Div(
        [
            dbc.Progress(id="experiment-progress", value=0, striped=True, animated=True, className="mb-1"),
            html.Div(id="experiment-message", className="small"),
        ],
        id="experiment-running",
    )
    note = html.P(
        "Each runs headless against this stack, like `scalelab experiment NAME`, and restores it afterwards. "
        "Reports are listed below, newest first.",
        className="small text-muted",
    )
    return dbc.Card(
        [dbc.CardHeader("Experiments"), dbc.CardBody([note, controls, progress, html.Div(id="experiment-results")])],
        className="mb-3",
    )


def page(lab: Lab) -> html.Div:
    """Return the whole page (built per visit, so the knob controls start from their current values)."""
    config = lab.config
    links = [
        dbc.NavItem(dbc.NavLink("Prometheus", href=config.prometheus_url, target="_blank", external_link=True)),
        dbc.NavItem(dbc.NavLink("Locust", href=config.loadgen_url, target="_blank", external_link=True)),
        dbc.NavItem(
            dbc.NavLink("Grafana", id="grafana-link", href=config.grafana_url, target="_blank", external_link=True)
        ),
    ]
    return html.Div(
        [
            dbc.NavbarSimple(links, brand="ScaleLab control", color="dark", dark=True, className="mb-3", fluid=True),
            dbc.Container(
                [
                    html.Div(id="source-banner"),
                    html.Div(id="action-banner"),
                    _topology(),
                    dbc.Row([dbc.Col(_load(), lg=6), dbc.Col(_knobs(lab), lg=6)], className="mb-3"),
                    _charts(),
                    dbc.Card(
                        [dbc.CardHeader("Failover, measured"), dbc.CardBody(html.Div(id="failover-table"))],
                        className="mb-3",
                    ),
                    dbc.Card([dbc.CardHeader("Actions"), dbc.CardBody(html.Div(id="action-log"))], className="mb-3"),
                    _experiments(lab),
                    dbc.Card([dbc.CardHeader("Grafana"), dbc.CardBody(html.Div(id="grafana"))], className="mb-3"),
                    html.Div(id="refresh-timing", className="small text-muted mb-3"),
                ],
                fluid=True,
            ),
            dcc.Interval(id="tick", interval=int(config.refresh_seconds * 1000)),
            dcc.Store(id="instance-names"),
            html.Div(id="action-sink", hidden=True),
        ]
    )
