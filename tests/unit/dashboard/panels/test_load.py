"""The load panel: its form, the plan it describes, and the load engine's state in one line."""

from __future__ import annotations

import pytest
from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import Lab
from dashboard.panels import load
from scalelab.load.engine import MIX_OPTIONS, LoadPlan

from .support import Callbacks, ids, text


def test_the_card_has_a_field_per_plan_setting_and_the_buttons():
    shown = ids(load.card())
    assert shown[:4] == ["load-users", "load-rate", "load-duration", "load-hot-keys"]
    assert {f"load-{option}" for option in MIX_OPTIONS} <= set(shown)
    assert {"load-start", "load-stop", "load-status"} <= set(shown)


def test_the_plan_is_read_from_the_form_with_empty_fields_as_zero():
    plan = load.plan_from_form("5", "40", "", 10, *[1] * len(MIX_OPTIONS))
    assert plan == LoadPlan(users=5, rate=40.0, duration=0, hot_keys=10, **dict.fromkeys(MIX_OPTIONS, 1))


def test_the_plan_needs_a_weight_per_mix_option():
    with pytest.raises(ValueError):
        load.plan_from_form(1, 0, 0, 1, 1)


def test_the_status_line_sums_up_the_load_engine():
    running = {
        "state": "running",
        "user_count": 5,
        "current_rps": 39.6,
        "fail_ratio": 0.001,
        "current_response_time_percentiles": {"response_time_percentile_0.95": 12.0},
    }
    line = load.load_status(running, "").to_plotly_json()["props"]
    assert line["id"] == "load-state" and line["data-state"] == "running"
    assert line["children"] == "load engine: running · 5 users · 40 req/s · failures 0.1 % · p95 12 ms"
    assert load.load_status({}, "") == ""


def test_each_interval_the_status_says_why_the_load_engine_cannot_be_read(app: Dash, lab: Lab):
    lab.status.load_problem = "the load engine at http://127.0.0.1:1 did not answer"
    register_panels(app, lab, [load])
    shown = Callbacks(app).fire("tick", "n_intervals", 1)
    assert "did not answer" in text(shown["load-status.children"])


def test_the_form_offers_the_open_model_and_the_shapes():
    shown = ids(load.card())
    assert {"load-model", "load-shape", "load-peak-rate"} <= set(shown)
    plan = load.plan_from_form(4, 10, 60, 10, *[1] * len(MIX_OPTIONS), model="open", shape="steps", peak_rate="80")
    assert (plan.model, plan.shape, plan.peak_rate) == ("open", "steps", 80.0)
    plan.validate()


@pytest.mark.parametrize(
    ("choices", "message"),
    [({"model": "sideways"}, "the load model is one of closed, open"), ({"shape": ["ramp"]}, "the shape is one of")],
)
def test_a_model_or_shape_the_form_does_not_offer_is_refused(choices, message):
    with pytest.raises(ValueError, match=message):
        load.plan_from_form(4, 10, 60, 10, *[1] * len(MIX_OPTIONS), **choices)


def test_start_sends_the_forms_model_and_shape_or_says_why_it_cannot(app: Dash, lab: Lab):
    register_panels(app, lab, [load])
    state = {
        "load-users": 4,
        "load-rate": 10,
        "load-duration": 0,
        "load-hot-keys": 10,
        "load-model": "open",
        "load-shape": "ramp",
        "load-peak-rate": 50,
        **{f"load-{option}": 1 for option in MIX_OPTIONS},
    }
    Callbacks(app).fire("load-start", "n_clicks", 1, state=state)
    action = lab.actions.latest()
    assert action.outcome == "failed" and "a ramp runs over the duration" in action.message
