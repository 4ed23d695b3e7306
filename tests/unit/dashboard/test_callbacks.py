"""Every panel's callbacks are registered, and each names components the page has."""

from __future__ import annotations

from pathlib import Path

import pytest
from dash import Dash, html
from prometheus_client import CollectorRegistry

from dashboard.callbacks import PANELS, register
from dashboard.config import DashboardConfig
from dashboard.lab import KNOBS, Lab
from dashboard.layout import page
from dashboard.panels import lessons
from dashboard.panels import presses as press_answer
from scalelab.orchestrators.local import LocalOrchestrator
from services.kit.config import load_config

from .panels.support import ids

# Drawn by the topology's callbacks, one per tile: not on the page until a stack runs.
PER_TILE = {"tile-state", "tile-detail", "instance-action"}
# Drawn with the lesson a student picks: its questions and its steps' buttons.
PER_LESSON = {"lesson-prediction", "lesson-step"}
# Drawn for the node pressed on the traffic map.
PER_NODE = {"map-action"}


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    """A Lab over an empty local stack; its sampler is never started."""
    config = load_config(DashboardConfig, {"run_dir": str(tmp_path)}, environ={})
    return Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())


@pytest.fixture
def app(lab: Lab) -> Dash:
    """A Dash app with every panel's callbacks."""
    app = Dash(__name__, suppress_callback_exceptions=True)
    app.layout = html.Div()
    register(app, lab)
    return app


def _named(app: Dash) -> list[tuple[str, str]]:
    """Return ``(component id, what names it)`` for every input, state and output of every callback."""
    named = []
    for key, callback in app.callback_map.items():
        for dependency in (*callback["inputs"], *callback["state"]):
            named.append((dependency["id"], key))
        parts = key[2:-2].split("...") if key.startswith("..") else [key]
        named += [(part.rsplit(".", 1)[0], key) for part in parts]
    return named


def test_every_panel_registers_its_callbacks(lab: Lab):
    names = {panel.__name__.rpartition(".")[2] for panel in PANELS}
    assert names == {
        "trafficmap",
        "topology",
        "load",
        "knobs",
        "live",
        "autoscaler",
        "failover",
        "lessons",
        "experiments",
        "actions",
        "grafana",
        "presses",
    }
    for panel in PANELS:
        alone = Dash(__name__, suppress_callback_exceptions=True)
        register(alone, lab, [panel])
        assert alone.callback_map, panel.__name__


def _drawn(lab: Lab) -> set[str]:
    """Return the ids of the page, with those of a lesson's view (drawn when one is picked)."""
    return {i for i in ids([page(lab), lessons.lesson_view(lab.lesson("failover"))]) if isinstance(i, str)}


def test_every_callback_names_a_component_of_the_page(app: Dash, lab: Lab):
    on_page = _drawn(lab)
    for id_, key in _named(app):
        if id_.startswith("{"):
            assert any(f'"type":"{kind}"' in id_ for kind in (*PER_TILE, *PER_LESSON, *PER_NODE, "scale")), key
            continue
        assert id_ in on_page, f"{key} names {id_!r}, which the page does not have"


def test_the_page_has_no_component_that_nothing_fills_or_reads(app: Dash, lab: Lab):
    named = {id_ for id_, _key in _named(app)}
    # Read by the browser (and the user) only: the link, the form's layout parts.
    static = {"grafana-link", "experiment-running"}
    unused = _drawn(lab) - named - static
    assert unused == set()


def test_every_knob_has_its_callback(app: Dash):
    inputs = {dependency["id"] for callback in app.callback_map.values() for dependency in callback["inputs"]}
    for key in KNOBS:
        assert f"apply-{key}" in inputs or f"knob-{key}" in inputs, key


def test_each_output_is_written_by_one_callback_except_the_press_sink_and_a_press_answer(app: Dash):
    outputs = [key for key in app.callback_map]
    written = [
        part.split("@")[0] for key in outputs for part in (key[2:-2].split("...") if key.startswith("..") else [key])
    ]
    presses = [part for part in written if part == "action-sink.children"]
    assert len(presses) >= len(KNOBS)
    # A press's answer shows its result at once: the tiles' states and the map (dashboard/panels/presses.py).
    answered = {f"{output.component_id_str()}.{output.component_property}" for output in press_answer.SHOWN}
    others = [part for part in written if part != "action-sink.children" and part not in answered]
    assert len(others) == len(set(others))
    for part in answered:  # each by its own refresh and by the two kinds of press
        assert written.count(part) == 3, part


def test_every_card_refreshed_each_interval_is_on_the_page_from_the_start(app: Dash, lab: Lab):
    # They refresh as one callback: an output drawn only later (a lesson's view) would stop them all.
    (key,) = [key for key, callback in app.callback_map.items() if "refresh-timing" in key]
    refreshed = {part.split("@")[0].rsplit(".", 1)[0] for part in key[2:-2].split("...")}
    assert {"chart-throughput", "traffic-map", "load-status", "instance-names"} <= refreshed
    assert refreshed - {i for i in ids(page(lab)) if isinstance(i, str)} == set()
