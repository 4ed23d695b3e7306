"""Build the page's live charts from the history, with every control action drawn as a marker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dashboard.actionlog import Action
from dashboard.history import History, Sample
from dashboard.sources import POOLS, split_prefix

__all__ = ["CHARTS", "Chart", "build_figure"]

MARKER_COLOURS = {"ok": "#6c757d", "pending": "#0d6efd", "failed": "#dc3545"}
DOWN_ACTIONS = ("kill", "pause", "remove")
LABELLED_ACTIONS = 3
GRID = "#e5e5e5"


@dataclass(frozen=True)
class Chart:
    """One live chart: the series it draws (by key prefix), their names and the unit."""

    id: str
    title: str
    prefixes: tuple[str, ...]
    unit: str
    scale: float = 1.0  # multiply values by this for display (seconds -> ms, ratio -> %)
    names: Callable[[str], str] = lambda key: key.rpartition(".")[2]
    stacked: bool = False
    # What the chart says before it has anything to show, instead of empty axes.
    empty: str = "No requests yet: press Start load"
    zero_is_empty: bool = True  # a rate of 0 is nothing yet; a gauge at 0 (an empty queue) is a reading


CHARTS = (
    Chart(
        "throughput",
        "Throughput and errors",
        ("rps", "errors", "failed"),
        "req/s",
        names={"rps": "requests/s", "errors": "5xx/s at the balancer", "failed": "failed/s at the clients"}.get,
    ),
    Chart("latency", "Latency at the balancer", ("p50", "p95", "p99"), "ms", scale=1000),
    # One per pool of the catalog (split-gateways, split-microservices): who was sent how much.
    *(
        Chart(f"split-{pool.label}", f"Requests by {svc.name}", (split_prefix(pool),), "req/s", stacked=True)
        for svc, pool in POOLS
    ),
    Chart(
        "cache",
        "Cache hit ratio (gateways' /data lookups)",
        ("cache.hit_ratio",),
        "%",
        scale=100,
        empty="No /data lookups yet: start a load with /data in its mix",
        zero_is_empty=False,
    ),
    Chart("database", "Database queries", ("db.qps",), "queries/s", empty="No database queries yet"),
    Chart(
        "queue",
        "Worker queue depth",
        ("worker.queue",),
        "tasks",
        empty="No reading of the worker's queue yet",
        zero_is_empty=False,
    ),
)


def build_figure(chart: Chart, samples: Sequence[Sample], actions: Sequence[Action]) -> dict[str, Any]:
    """Return the figure of ``chart`` over ``samples``, with a labelled line at each action.

    A plain dict in Plotly's figure format: building ``go.Figure`` objects validates every
    property and cost several times the whole refresh budget on this page.
    """
    times = [round(sample.time * 1000) for sample in samples]  # a date axis reads ms since the epoch
    traces = []
    for prefix in chart.prefixes:
        for series in History.series(samples, prefix):
            trace: dict[str, Any] = {
                "type": "scatter",
                "mode": "lines",
                "x": times,
                "y": [None if v is None else round(v * chart.scale, 4) for v in series.values],
                "name": chart.names(series.key) or series.key,
                "hovertemplate": f"%{{y:.3~f}} {chart.unit}<extra>%{{fullData.name}}</extra>",
            }
            if chart.stacked:
                trace["stackgroup"] = "one"
            traces.append(trace)
    empty = not any(
        value is not None and (value != 0 or not chart.zero_is_empty) for trace in traces for value in trace["y"]
    )
    shown = [action for action in actions if samples and action.time >= samples[0].time]
    shapes, notes = [], []
    for action in shown:
        colour = MARKER_COLOURS[action.outcome]
        at = round(action.time * 1000)
        dash = "solid" if action.kind in DOWN_ACTIONS else "dot"
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": at,
                "x1": at,
                "y0": 0,
                "y1": 1,
                "line": {"color": colour, "width": 1, "dash": dash},
            }
        )
    # Written labels cost the browser far more to draw than lines do, so only the newest presses
    # get one; every press has a marker at the top whose hover shows its label.
    for action in shown[-LABELLED_ACTIONS:]:
        notes.append(
            {
                "x": round(action.time * 1000),
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "text": action.label,
                "showarrow": False,
                "textangle": -90,
                "xanchor": "right",
                "yanchor": "top",
                "font": {"size": 10, "color": MARKER_COLOURS[action.outcome]},
            }
        )
    if shown:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "presses",
                "yaxis": "y2",
                "showlegend": False,
                "x": [round(action.time * 1000) for action in shown],
                "y": [1] * len(shown),
                "marker": {
                    "symbol": "triangle-down",
                    "size": 9,
                    "color": [MARKER_COLOURS[action.outcome] for action in shown],
                },
                "hovertext": [action.label for action in shown],
                "hoverinfo": "text",
            }
        )
    layout = {
        "title": {"text": chart.title, "font": {"size": 14}, "x": 0.01},
        "margin": {"l": 50, "r": 10, "t": 36, "b": 30},
        "height": 260,
        "yaxis": {"title": {"text": chart.unit}, "rangemode": "tozero", "gridcolor": GRID, "zeroline": False},
        # The press markers' own scale: 0 to 1 over the plot's height, drawn over the data.
        "yaxis2": {"overlaying": "y", "range": [0, 1.02], "visible": False, "fixedrange": True},
        "xaxis": {"type": "date", "gridcolor": GRID},
        "legend": {"orientation": "h", "y": -0.15},
        "uirevision": chart.id,  # keep the user's zoom across refreshes
        # A few plain properties instead of a template: Plotly's templates add about 10 KiB per
        # figure to every refresh.
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"family": "system-ui, sans-serif", "size": 11},
        "shapes": shapes,
        "annotations": notes,
        "meta": {"chart": chart.id, "samples": len(samples), "empty": empty},
    }
    if empty:
        # Words where the lines will be; without a sample there is no time axis either (not one dated 1970).
        notes.append(
            {
                "text": chart.empty,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "showarrow": False,
                "font": {"size": 13, "color": "#6c757d"},
            }
        )
        if not samples:
            layout["xaxis"] = {"visible": False}
            layout["yaxis"] = {**layout["yaxis"], "visible": False}
    return {"data": traces, "layout": layout}
