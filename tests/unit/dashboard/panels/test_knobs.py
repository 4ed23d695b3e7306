"""The knobs panel: a row per catalog knob on the page, a callback for each, values set through the Lab."""

from __future__ import annotations

import pytest
from dash import Dash
from prometheus_client import CollectorRegistry

from dashboard.actionlog import ActionLog
from dashboard.callbacks import register as register_panels
from dashboard.lab import KNOBS, Lab
from dashboard.panels import knobs
from scalelab import catalog
from scalelab.stack import Tile

from .support import Callbacks, RecordingLab, components, ids

NUMBERS = [knob for knob in KNOBS.values() if knob.spec.kind == "number"]
SWITCHES_AND_CHOICES = [knob for knob in KNOBS.values() if knob.spec.kind != "number"]
PER_INSTANCE = [knob for knob in KNOBS.values() if knob.spec.per_instance]
SHARED = [knob for knob in KNOBS.values() if not knob.spec.per_instance]
PICKED = sorted({knob.service for knob in PER_INSTANCE})


@pytest.fixture
def recording() -> RecordingLab:
    """A stand-in Lab that records the knobs it is asked to set."""
    return RecordingLab(ActionLog(CollectorRegistry()))


@pytest.fixture
def callbacks(app: Dash, recording: RecordingLab) -> Callbacks:
    """The knobs panel's callbacks on the recording Lab."""
    register_panels(app, recording, [knobs])  # type: ignore[arg-type]
    return Callbacks(app)


def test_the_page_shows_the_catalogs_knobs():
    on_page = [f"{svc.name}__{spec.name}" for svc in catalog.lab_services() for spec in svc.knobs if spec.on_page]
    assert sorted(KNOBS) == sorted(on_page)
    assert {"gateway__cache_enabled", "load-balancer__algorithm", "microservice__extra_latency_ms"} <= set(KNOBS)


def test_the_card_has_one_control_per_knob_with_apply_now_and_pickers_where_they_belong(lab: Lab):
    shown = ids(knobs.card(lab))
    assert len(shown) == len(set(shown)), "an id is used twice"
    assert [i for i in shown if i.startswith("knob-") and not i.startswith("knob-instance-")] == [
        f"knob-{knob.key}" for _service, shared, single in knobs.knob_blocks() for knob in [*shared, *single]
    ]
    assert {i for i in shown if i.startswith("apply-")} == {f"apply-{knob.key}" for knob in NUMBERS}
    assert {i for i in shown if i.startswith("now-")} == {f"now-{knob.key}" for knob in SHARED}
    assert {i for i in shown if i.startswith("knob-instance-")} == {f"knob-instance-{s}" for s in PICKED}
    assert "knob-instance-microservice" in shown


def test_blocks_follow_a_request_and_split_knobs_set_per_instance():
    blocks = knobs.knob_blocks()
    order = [svc.name for svc in reversed(catalog.lab_services())]
    assert [service for service, _s, _i in blocks] == [name for name in order if name in {b[0] for b in blocks}]
    for service, shared, single in blocks:
        assert all(k.service == service and not k.spec.per_instance for k in shared)
        assert all(k.service == service and k.spec.per_instance for k in single)


def test_controls_start_from_the_values_read_last_else_the_defaults(lab: Lab):
    lab.status.knobs = {"gateway__cache_enabled": False, "load-balancer__algorithm": "least_connections"}
    by_id = {c.id: c for c in components(knobs.card(lab)) if getattr(c, "id", None)}
    assert by_id["knob-gateway__cache_enabled"].value is False
    assert by_id["knob-load-balancer__algorithm"].value == "least_connections"
    assert by_id["knob-database__latency_ms"].value == catalog.find_knob("database", "latency_ms").default


def test_a_callback_is_registered_for_every_knob(callbacks: Callbacks):
    for knob in NUMBERS:
        assert len(callbacks.keys(f"apply-{knob.key}", "n_clicks")) == 1, knob.key
    for knob in SWITCHES_AND_CHOICES:
        assert len(callbacks.keys(f"knob-{knob.key}", "value")) == 1, knob.key


def test_a_switch_is_set_as_it_changes(callbacks: Callbacks, recording: RecordingLab):
    callbacks.fire("knob-gateway__cache_enabled", "value", False)
    assert [(c.key, c.value, c.instance) for c in recording.knob_calls] == [("gateway__cache_enabled", False, None)]


def test_a_number_is_set_as_a_float_on_apply(callbacks: Callbacks, recording: RecordingLab):
    callbacks.fire("apply-database__latency_ms", "n_clicks", 1, state={"knob-database__latency_ms": "60"})
    assert [(c.key, c.value, c.instance) for c in recording.knob_calls] == [("database__latency_ms", 60.0, None)]


def test_an_empty_number_sets_nothing(callbacks: Callbacks, recording: RecordingLab):
    assert callbacks.fire("apply-database__latency_ms", "n_clicks", 1, state={"knob-database__latency_ms": ""}) is None
    assert recording.knob_calls == []


def test_a_per_instance_knob_is_set_on_the_picked_instance(callbacks: Callbacks, recording: RecordingLab):
    state = {"knob-microservice__extra_latency_ms": 200, "knob-instance-microservice": "microservice-2"}
    callbacks.fire("apply-microservice__extra_latency_ms", "n_clicks", 1, state=state)
    assert [(c.key, c.value, c.instance) for c in recording.knob_calls] == [
        ("microservice__extra_latency_ms", 200.0, "microservice-2")
    ]


def test_a_per_instance_knob_without_an_instance_logs_a_failed_action(callbacks: Callbacks, recording: RecordingLab):
    callbacks.fire("apply-microservice__error_rate", "n_clicks", 1, state={"knob-microservice__error_rate": 0.5})
    assert recording.knob_calls == []
    action = recording.actions.latest()
    assert action.outcome == "failed" and action.message == "pick the microservice instance first"
    assert action.label == "knob microservice error_rate"


def test_current_values_and_the_pickers_options_refresh_each_interval(callbacks: Callbacks, recording: RecordingLab):
    recording.status.knobs = {"gateway__cache_enabled": True, "gateway__algorithm": "power_of_two"}
    recording.status.tiles = [
        Tile("microservice-1", "microservice", "http://127.0.0.1:5001", "healthy", "running"),
        Tile("gateway-1", "gateway", "http://127.0.0.1:5000", "healthy", "running"),
        Tile("microservice-2", "microservice", "http://127.0.0.1:5006", "down", "stopped"),
    ]
    shown = callbacks.fire("tick", "n_intervals", 1)
    assert shown["now-gateway__cache_enabled.children"] == "now: on"
    assert shown["now-gateway__algorithm.children"] == "now: power of two"
    assert shown["now-database__latency_ms.children"] == ""  # not read yet
    assert shown["knob-instance-microservice.options"] == [
        {"label": "microservice-1", "value": "microservice-1"},
        {"label": "microservice-2", "value": "microservice-2"},
    ]
    assert set(shown) == {f"now-{k.key}.children" for k in SHARED} | {f"knob-instance-{s}.options" for s in PICKED}


@pytest.mark.parametrize(
    ("value", "text"), [(True, "on"), (False, "off"), ("round_robin", "round robin"), (30.0, "30.0")]
)
def test_knob_text(value, text):
    assert knobs.knob_text(value) == text
