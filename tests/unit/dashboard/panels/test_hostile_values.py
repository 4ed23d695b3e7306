"""The page trusts nothing its callbacks receive: every value a browser could forge is checked by the Lab."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from dashboard.lab import KNOBS, Lab, knob_key
from dashboard.panels.load import plan_from_form
from scalelab.stack import Tile


def _with_tiles(lab: Lab, *names: str) -> None:
    tiles = [Tile(name, name.rpartition("-")[0] or name, "http://127.0.0.1:1", "healthy", "running") for name in names]
    lab.status = replace(lab.status, tiles=tiles)


@pytest.mark.parametrize("name", ["nosuch", "../../etc", None, 5, {"a": 1}, "gateway-99"])
def test_an_instance_the_stack_does_not_have_is_refused(lab: Lab, name: object) -> None:
    _with_tiles(lab, "gateway-1", "gateway-2")
    action = lab.instance_action("kill", name)  # type: ignore[arg-type]
    assert (action.outcome, action.target) == ("failed", "refused")


def test_an_unknown_verb_is_refused(lab: Lab) -> None:
    _with_tiles(lab, "gateway-1")
    action = lab.instance_action("explode", "gateway-1")
    assert (action.outcome, action.kind, action.target) == ("failed", "invalid", "refused")


def test_the_page_itself_has_no_kill_button(lab: Lab) -> None:
    _with_tiles(lab, "dashboard")
    assert lab.instance_action("kill", "dashboard").outcome == "failed"


@pytest.mark.parametrize(
    ("knob", "value", "says"),
    [
        (knob_key("database", "latency_ms"), -5, "must be from 0 to 60000"),
        (knob_key("database", "latency_ms"), 1e308, "must be from 0 to 60000"),
        (knob_key("database", "latency_ms"), math.nan, "takes a number"),
        (knob_key("database", "latency_ms"), "fast", "takes a number"),
        (knob_key("database", "error_rate"), 2, "must be from 0 to 1"),
        (knob_key("gateway", "cache_enabled"), "yes", "is on or off"),
        (knob_key("load-balancer", "algorithm"), "random_walk", "is one of round_robin"),
        ("gateway__nosuch", 1, "no such knob"),
    ],
)
def test_a_knob_value_outside_its_kind_or_limits_is_refused(lab: Lab, knob: str, value: object, says: str) -> None:
    action = lab.set_knob(knob, value)
    assert action.outcome == "failed"
    assert says in action.message


def test_a_per_instance_knob_only_reaches_an_instance_of_its_service(lab: Lab) -> None:
    _with_tiles(lab, "microservice-1", "gateway-1")
    key = knob_key("microservice", "extra_latency_ms")
    assert key in KNOBS
    for instance in ("gateway-1", "microservice-9", "../x"):
        assert lab.set_knob(key, 10, instance).outcome == "failed"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (("abc", 10, 0, 10, 70, 10, 15, 5), "users must be a whole number"),
        ((10, "nan", 0, 10, 70, 10, 15, 5), "target req/s must be a number"),
        ((10, 10, 1e400, 10, 70, 10, 15, 5), "duration must be a whole number"),
        ((2.5, 10, 0, 10, 70, 10, 15, 5), "users must be a whole number"),
    ],
)
def test_a_load_field_that_is_not_a_number_is_named(fields: tuple, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        plan_from_form(*fields)


def test_a_load_plan_out_of_range_is_refused_before_it_reaches_the_engine(lab: Lab) -> None:
    plan = plan_from_form(10, 10**9, 0, 10, 70, 10, 15, 5)
    action = lab.start_load(plan)
    assert action.outcome == "failed" and "target req/s must be from 0" in action.message
