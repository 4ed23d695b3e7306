"""The experiments panel: run a built-in experiment against this stack, follow it, and open the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html, no_update

from dashboard.changes import ticked
from dashboard.lab import Lab

__all__ = ["EXPERIMENT_ROWS", "card", "experiment_results", "register"]

EXPERIMENT_ROWS = 10


def card(lab: Lab) -> dbc.Card:
    """Return the experiments card: the built-in experiments to pick from, progress, and the reports."""
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


def experiment_results(runs: list[dict[str, Any]]) -> Any:
    """Return a row per report summary: its folder, verdict, failed checks and a link to the report."""
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


def register(app: Dash, lab: Lab) -> None:
    """Wire the experiments card to ``lab``: progress and reports each interval, Run as an action."""

    @ticked(
        app,
        [
            Output("experiment-progress", "value"),
            Output("experiment-progress", "label"),
            Output("experiment-progress", "animated"),
            Output("experiment-message", "children"),
            Output("experiment-run", "disabled"),
            Output("experiment-results", "children"),
        ],
    )
    def experiment_status() -> Any:
        run = lab.experiment
        message = f"{run.name}: {run.message}" if run.name else ""
        return (
            round(run.fraction * 100),
            f"{run.fraction:.0%}" if run.running else "",
            run.running,
            message,
            run.running,
            experiment_results(lab.experiment_results()[:EXPERIMENT_ROWS]),
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
