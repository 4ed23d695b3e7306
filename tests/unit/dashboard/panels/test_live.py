"""The live panel: a graph per chart, the window they show, redrawn each interval and timed."""

from __future__ import annotations

import time

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.charts import CHARTS
from dashboard.history import Sample
from dashboard.lab import Lab
from dashboard.panels import live

from .support import Callbacks, ids


def test_the_card_has_a_graph_per_chart_and_the_window():
    assert ids(live.card()) == ["window", *[f"chart-{chart.id}" for chart in CHARTS]]
    assert live.DEFAULT_WINDOW in live.WINDOWS.values()


def test_each_interval_every_chart_is_drawn_and_the_time_it_took_is_kept(app: Dash, lab: Lab):
    now = time.time()
    for second in range(5):
        lab.history.add(Sample(now - 5 + second, {"rps": 10.0, "split.gateways.gateway-1": 4.0}))
    register_panels(app, lab, [live])
    callbacks = Callbacks(app)
    # One callback for all: each answer costs the browser a pass over every component of the page.
    (key,) = callbacks.keys("tick", "n_intervals")
    assert all(f"chart-{chart.id}.figure" in key for chart in CHARTS) and "refresh-timing.children" in key
    shown = callbacks.fire("tick", "n_intervals", 1, output="refresh-timing")
    assert {f"chart-{chart.id}.figure" for chart in CHARTS} | {"refresh-timing.children"} == set(shown)
    assert shown["chart-split-gateways.figure"]["data"][0]["name"] == "gateway-1"
    assert shown["refresh-timing.children"].startswith("charts drawn from 5 samples in ")
    assert len(lab.refresh_timings) == 1
