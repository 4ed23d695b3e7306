"""What the page does: refresh tiles, charts and tables each interval, and turn presses into actions.

Every callback reads the Lab's latest sample (taken in the background) or hands an action to the
Lab; none waits on the stack, so each finishes well inside the refresh interval.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, ctx, html, no_update

from .actions import Action
from .charts import CHARTS, build_figure
from .lab import KNOBS, Lab
from .layout import STATE_COLOURS, TIERS, tile_card
from .loadengine import MIX_OPTIONS, LoadPlan

__all__ = ["GRAFANA_PANELS", "register"]

# Panels of the overview dashboard embedded when Grafana answers (single-panel URLs).
GRAFANA_DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "dashboards" / "scalelab-overview.json"
GRAFANA_PANELS = (
    "Requests per second by gateway",
    "Latency at the load balancer",
    "Backend health",
    "Cache hit ratio",
)
ACTION_BANNER_SECONDS = 15.0
FAILED_BANNER_SECONDS = 30.0
ACTION_LOG_ROWS = 12
EXPERIMENT_ROWS = 10


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]


def _seconds(value: float | None) -> str:
    return "…" if value is None else f"{value:.2f} s"


def _grafana_panels(lab: Lab) -> list[tuple[int, str]]:
    try:
        panels = json.loads(GRAFANA_DASHBOARD.read_text())["panels"]
    except (OSError, ValueError, KeyError):
        return []
    by_title = {panel["title"]: panel["id"] for panel in panels}
    return [(by_title[title], title) for title in GRAFANA_PANELS if title in by_title]


def register(app: Dash, lab: Lab) -> None:
    """Wire the page's callbacks to ``lab``."""
    grafana_panels = _grafana_panels(lab)

    # ------------------------------------------------------------ topology
    @app.callback(Output("instance-names", "data"), Input("tick", "n_intervals"), State("instance-names", "data"))
    def instance_names(_n: int | None, known: list[str] | None) -> Any:
        names = [tile.name for tile in lab.status.tiles]
        return names if names != known else no_update

    @app.callback(Output("topology", "children"), Input("instance-names", "data"))
    def topology(_names: list[str] | None) -> Any:
        tiles = lab.status.tiles
        rows = []
        for title, services in TIERS:
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

    @app.callback(
        Output({"type": "tile-state", "name": ALL}, "children"),
        Output({"type": "tile-state", "name": ALL}, "color"),
        Output({"type": "tile-detail", "name": ALL}, "children"),
        Output({"type": "instance-action", "action": ALL, "name": ALL}, "disabled"),
        Input("tick", "n_intervals"),
        Input("topology", "children"),
    )
    def tile_states(_n: int | None, _children: Any) -> Any:
        tiles = {tile.name: tile for tile in lab.status.tiles}
        rates = lab.history.latest().values if lab.history.latest() else {}
        pending = {a.target for a in lab.actions.recent(time.time() - 60) if a.outcome == "pending"}
        states, colours, details, disabled = [], [], [], []
        for output in ctx.outputs_list[0]:
            tile = tiles.get(output["id"]["name"])
            states.append(tile.state if tile else "gone")
            colours.append(STATE_COLOURS.get(tile.state, "secondary") if tile else "secondary")
        for output in ctx.outputs_list[2]:
            tile = tiles.get(output["id"]["name"])
            parts = []
            if tile is not None:
                rate = rates.get(f"split.gateways.{tile.name}", rates.get(f"split.microservices.{tile.name}"))
                if rate is not None:
                    parts.append(f"{rate:.0f} req/s")
                if tile.in_flight is not None:
                    parts.append(f"{tile.in_flight} in flight")
                if tile.detail:
                    parts.append(tile.detail)
            details.append(" · ".join(parts))
        allowed = {"running": {"kill", "pause"}, "paused": {"resume", "kill"}, "stopped": {"start"}}
        for output in ctx.outputs_list[3]:
            name, action = output["id"]["name"], output["id"]["action"]
            tile = tiles.get(name)
            disabled.append(tile is None or name in pending or action not in allowed.get(tile.process, set()))
        return states, colours, details, disabled

    # ------------------------------------------------------------ charts
    @app.callback(
        [Output(f"chart-{chart.id}", "figure") for chart in CHARTS],
        Output("refresh-timing", "children"),
        Input("tick", "n_intervals"),
        Input("window", "value"),
    )
    def charts(_n: int | None, window: int | None) -> Any:
        began = time.perf_counter()
        samples = lab.history.window(float(window or 300))
        actions = lab.actions.recent(samples[0].time if samples else None)
        figures = [build_figure(chart, samples, actions) for chart in CHARTS]
        took = (time.perf_counter() - began) * 1000
        lab.refresh_timings.append(took)
        text = (
            f"charts drawn from {len(samples)} samples in {took:.0f} ms; the stack was sampled in "
            f"{lab.status.sample_seconds * 1000:.0f} ms; history holds {len(lab.history)} samples"
        )
        return [*figures, text]

    # ------------------------------------------------------------ status, tables
    @app.callback(
        Output("source-banner", "children"),
        Output("action-banner", "children"),
        Output("load-status", "children"),
        Output("failover-table", "children"),
        Output("action-log", "children"),
        Output("grafana", "children"),
        Output("knob-ms-instance", "options"),
        [Output(f"now-{key}", "children") for key in KNOBS if key not in ("ms_latency", "ms_error_rate")],
        Input("tick", "n_intervals"),
    )
    def status(_n: int | None) -> Any:
        status = lab.status
        source = []
        if status.source != "prometheus" and status.time:
            source = dbc.Alert(
                [html.Strong("Prometheus is not reachable. "), status.source_problem],
                color="warning",
                id="prometheus-down",
                className="py-2",
            )
        ms_options = [{"label": t.name, "value": t.name} for t in status.tiles if t.service == "microservice"]
        nows = [
            f"now: {_knob_text(status.knobs[key])}" if key in status.knobs else ""
            for key in KNOBS
            if key not in ("ms_latency", "ms_error_rate")
        ]
        return (
            source,
            _action_banner(lab.actions.latest()),
            _load_status(status.load, status.load_problem),
            _failover_table(lab),
            _action_log(lab.actions.recent()[-ACTION_LOG_ROWS:]),
            _grafana(lab, status.grafana, grafana_panels),
            ms_options,
            *nows,
        )

    # ------------------------------------------------------------ experiments
    @app.callback(
        Output("experiment-progress", "value"),
        Output("experiment-progress", "label"),
        Output("experiment-progress", "animated"),
        Output("experiment-message", "children"),
        Output("experiment-run", "disabled"),
        Output("experiment-results", "children"),
        Input("tick", "n_intervals"),
    )
    def experiment_status(_n: int | None) -> Any:
        run = lab.experiment
        message = f"{run.name}: {run.message}" if run.name else ""
        return (
            round(run.fraction * 100),
            f"{run.fraction:.0%}" if run.running else "",
            run.running,
            message,
            run.running,
            _experiment_results(lab.experiment_results()[:EXPERIMENT_ROWS]),
        )

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input("experiment-run", "n_clicks"),
        State("experiment-name", "value"),
        prevent_initial_call=True,
    )
    def run_experiment(_n: int, name: str | None) -> Any:
        if not name:
            return no_update
        try:
            return lab.run_experiment(name).label
        except ValueError as exc:
            action = lab.actions.begin("experiment", name)
            return lab.actions.finish(action, False, str(exc)).label

    # ------------------------------------------------------------ presses
    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input({"type": "instance-action", "action": ALL, "name": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def instance_action(_clicks: list[int | None]) -> Any:
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            return no_update  # a tile was (re)drawn, nothing was pressed
        pressed = ctx.triggered_id
        return lab.instance_action(pressed["action"], pressed["name"]).label

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

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input("load-start", "n_clicks"),
        State("load-users", "value"),
        State("load-rate", "value"),
        State("load-duration", "value"),
        State("load-hot-keys", "value"),
        [State(f"load-{option}", "value") for option in MIX_OPTIONS],
        prevent_initial_call=True,
    )
    def load_start(_n: int, users: Any, rate: Any, duration: Any, hot_keys: Any, *mix: Any) -> Any:
        def number(value: Any, kind: type) -> Any:
            return kind(value) if value not in (None, "") else kind(0)

        plan = LoadPlan(
            users=number(users, int),
            rate=number(rate, float),
            duration=number(duration, int),
            hot_keys=number(hot_keys, int),
            **{option: number(value, int) for option, value in zip(MIX_OPTIONS, mix, strict=True)},
        )
        return lab.start_load(plan).label

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input("load-stop", "n_clicks"),
        prevent_initial_call=True,
    )
    def load_stop(_n: int) -> Any:
        return lab.stop_load().label

    for key in ("cache_enabled", "coalescing", "lb_algorithm", "ms_algorithm"):
        _on_change(app, lab, key)
    for key in ("cache_ttl", "db_latency", "db_error_rate"):
        _on_apply(app, lab, key)
    for key in ("ms_latency", "ms_error_rate"):
        _on_apply(app, lab, key, instance_from="knob-ms-instance")


def _on_change(app: Dash, lab: Lab, key: str) -> None:
    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input(f"knob-{key}", "value"),
        prevent_initial_call=True,
    )
    def changed(value: Any) -> Any:
        return lab.set_knob(key, value).label


def _on_apply(app: Dash, lab: Lab, key: str, instance_from: str | None = None) -> None:
    states = [State(f"knob-{key}", "value")]
    if instance_from:
        states.append(State(instance_from, "value"))

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input(f"apply-{key}", "n_clicks"),
        *states,
        prevent_initial_call=True,
    )
    def applied(_n: int, value: Any, instance: str | None = None) -> Any:
        if value in (None, ""):
            return no_update
        if instance_from and not instance:
            action = lab.actions.begin("knob", KNOBS[key].service, KNOBS[key].knob)
            lab.actions.finish(action, False, "pick the microservice instance first")
            return action.label
        return lab.set_knob(key, float(value), instance).label


# ---------------------------------------------------------------- renderers
def _knob_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).replace("_", " ")


def _action_banner(action: Action | None) -> Any:
    if action is None:
        return []
    age = time.time() - action.time
    if action.outcome == "failed" and age < FAILED_BANNER_SECONDS:
        return dbc.Alert([html.Strong(f"{action.label} failed: "), action.message], color="danger", className="py-2")
    if age > ACTION_BANNER_SECONDS:
        return []
    if action.outcome == "pending":
        return dbc.Alert(f"{action.label} …", color="info", className="py-2")
    return dbc.Alert(f"{action.label}: {action.message}", color="success", className="py-2")


def _load_status(load: dict[str, Any], problem: str) -> Any:
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


def _failover_table(lab: Lab) -> Any:
    records = lab.failovers.records()
    bounds = lab.status.detection_bounds
    expected = ", ".join(f"{service}s within {bound:.2f} s" for service, bound in sorted(bounds.items()))
    note = html.P(
        f"Kill or pause a gateway or microservice to measure. The health-check settings predict detection of "
        f"{expected or '(no pool status yet)'} (fall x (interval + timeout)).",
        className="small text-muted",
    )
    if not records:
        return note
    header = html.Thead(
        html.Tr(
            [
                html.Th(text)
                for text in (
                    "at",
                    "instance",
                    "action",
                    "marked down after",
                    "failed",
                    "retried",
                    "restored by",
                    "back in rotation after",
                    "serving again after",
                    "note",
                )
            ]
        )
    )
    rows = [
        html.Tr(
            [
                html.Td(_clock(r.started)),
                html.Td(r.instance),
                html.Td(r.action),
                html.Td(_seconds(r.detected_after), className="detected"),
                html.Td("…" if r.failed is None else r.failed, className="failed"),
                html.Td("…" if r.retried is None else r.retried),
                html.Td(r.restored_by or ""),
                html.Td(_seconds(r.marked_up_after) if r.restored_by else ""),
                html.Td(_seconds(r.serving_after) if r.restored_by else "", className="serving"),
                html.Td(r.note),
            ],
            **{"data-instance": r.instance},
        )
        for r in records
    ]
    return [note, dbc.Table([header, html.Tbody(rows)], size="sm", striped=True, id="failover-records")]


def _experiment_results(runs: list[dict[str, Any]]) -> Any:
    if not runs:
        return html.P("No reports yet.", className="small text-muted mb-0")
    rows = []
    for run in runs:
        folder = Path(run["directory"]).name
        failed = [check["label"] for check in run.get("checks", []) if not check.get("passed")]
        verdict = dbc.Badge(
            "passed" if run.get("passed") else "failed", color="success" if run.get("passed") else "danger"
        )
        rows.append(
            html.Tr(
                [
                    html.Td(folder),
                    html.Td(verdict),
                    html.Td(", ".join(failed), className="small"),
                    html.Td(html.A("report", href=f"/results/{folder}/report.html", target="_blank")),
                ],
                **{"data-experiment": run.get("experiment", "")},
            )
        )
    return dbc.Table([html.Tbody(rows)], size="sm", id="experiment-reports")


def _action_log(actions: list[Action]) -> Any:
    if not actions:
        return html.P("Nothing pressed yet.", className="small text-muted")
    colours = {"ok": "success", "failed": "danger", "pending": "info"}
    return html.Ul(
        [
            html.Li(
                [
                    html.Span(_clock(a.time), className="text-muted me-2"),
                    dbc.Badge(a.outcome, color=colours[a.outcome], className="me-2"),
                    html.Span(a.label, className="me-2"),
                    html.Span(a.message, className="text-muted"),
                ]
            )
            for a in reversed(actions)
        ],
        className="list-unstyled small mb-0",
    )


def _grafana(lab: Lab, reachable: bool, panels: list[tuple[int, str]]) -> Any:
    base = lab.config.grafana_url.rstrip("/")
    if not reachable:
        return html.P(
            f"Grafana is not reachable at {lab.config.grafana_probe_url}; the charts above stand alone. "
            "In Docker it runs with the stack (docker compose up), with the same dashboards.",
            className="small text-muted mb-0",
        )
    frames = [
        dbc.Col(
            html.Iframe(
                src=f"{base}/d-solo/scalelab-overview/scalelab?orgId=1&panelId={panel}&refresh=5s&from=now-5m&to=now",
                title=title,
                style={"width": "100%", "height": "240px", "border": 0},
            ),
            lg=6,
        )
        for panel, title in panels
    ]
    link = html.A("Open the full dashboard in Grafana", href=f"{base}/d/scalelab-overview", target="_blank")
    return [dbc.Row(frames, className="g-2"), link]
