"""Runtime knobs: validation, all-or-nothing updates, listeners and their Prometheus export."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from services.kit.errors import ApiError
from services.kit.knobs import MAX_KNOB_MAGNITUDE, Knob, Knobs


def lab_knobs(registry: CollectorRegistry | None = None) -> Knobs:
    return Knobs(
        [
            Knob("latency_ms", 50.0, "Simulated latency.", 0, 1000),
            Knob("workers", 4, "Threads.", 1, 16),
            Knob("cache_enabled", True, "Use the cache."),
            Knob("algorithm", "round_robin", "Balancing.", choices=("round_robin", "least_connections")),
        ],
        registry,
    )


def assert_400(call, match: str) -> None:
    with pytest.raises(ApiError, match=match) as info:
        call()
    assert info.value.status == 400


def test_read_values_by_name():
    knobs = lab_knobs()
    assert knobs["latency_ms"] == 50.0
    assert knobs["workers"] == 4
    assert knobs["cache_enabled"] is True
    assert knobs["algorithm"] == "round_robin"
    assert "workers" in knobs
    assert "nope" not in knobs


def test_update_applies_and_returns_the_changes():
    knobs = lab_knobs()
    changed = knobs.update({"latency_ms": 5, "cache_enabled": False, "algorithm": "least_connections"})
    assert changed == {"latency_ms": 5.0, "cache_enabled": False, "algorithm": "least_connections"}
    assert isinstance(knobs["latency_ms"], float)
    assert knobs.values() == {
        "latency_ms": 5.0,
        "workers": 4,
        "cache_enabled": False,
        "algorithm": "least_connections",
    }


def test_limits_are_inclusive():
    knobs = lab_knobs()
    knobs.update({"latency_ms": 0, "workers": 16})
    assert (knobs["latency_ms"], knobs["workers"]) == (0.0, 16)
    knobs.update({"latency_ms": 1000, "workers": 1})
    assert (knobs["latency_ms"], knobs["workers"]) == (1000.0, 1)


def test_an_int_knob_accepts_a_whole_float():
    knobs = lab_knobs()
    knobs.update({"workers": 8.0})
    assert knobs["workers"] == 8
    assert isinstance(knobs["workers"], int)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"latency_ms": -1}, r"must lie in \[0, 1000\]"),
        ({"latency_ms": 1000.5}, "must lie in"),
        ({"latency_ms": "5"}, "takes a number"),
        ({"latency_ms": None}, "takes a number"),
        ({"latency_ms": True}, "takes a number"),
        ({"latency_ms": math.nan}, "takes a number"),
        ({"latency_ms": math.inf}, "takes a number"),
        ({"workers": 2.5}, "whole number"),
        ({"workers": 0}, "must lie in"),
        ({"cache_enabled": 1}, "true or false"),
        ({"cache_enabled": "true"}, "true or false"),
        ({"algorithm": "random"}, "takes one of"),
        ({"algorithm": 1}, "takes one of"),
        ({"nope": 1}, r"unknown knob\(s\) \['nope'\]"),
        ({}, "JSON object"),
        ([("workers", 2)], "JSON object"),
        ("workers=2", "JSON object"),
    ],
)
def test_bad_updates_are_400_and_change_nothing(changes, match):
    knobs = lab_knobs()
    before = knobs.values()
    assert_400(lambda: knobs.update(changes), match)
    assert knobs.values() == before


@pytest.mark.parametrize("value", [1e308, -1e308, 10**400, -(10**400), 2**64])
def test_huge_numbers_are_400_for_bounded_and_unbounded_knobs(value, registry):
    knobs = Knobs(
        [
            Knob("latency_ms", 50.0, "Bounded float.", 0, 1000),
            Knob("workers", 4, "Bounded int.", 1, 16),
            Knob("free_float", 1.0, "No limits."),
            Knob("free_int", 1, "No limits."),
        ],
        registry,
    )
    before = knobs.values()
    for name in before:
        assert_400(lambda name=name: knobs.update({name: value}), "must lie in|takes a number from")
    assert knobs.values() == before
    assert registry.get_sample_value("scalelab_knob_value", {"knob": "free_int"}) == 1.0  # still scrapes


def test_unbounded_knobs_take_numbers_up_to_the_largest_exact_float():
    knobs = Knobs([Knob("free_int", 1, "No limits."), Knob("free_float", 1.0, "No limits.")])
    knobs.update({"free_int": MAX_KNOB_MAGNITUDE, "free_float": -MAX_KNOB_MAGNITUDE})
    assert knobs.values() == {"free_int": 2**53, "free_float": -(2.0**53)}


def test_update_is_all_or_nothing():
    knobs = lab_knobs()
    heard = []
    knobs.on_change(lambda name, value: heard.append(name))
    before = knobs.values()
    assert_400(lambda: knobs.update({"latency_ms": 1, "workers": 2, "algorithm": "bogus"}), "algorithm")
    assert knobs.values() == before
    assert knobs.snapshot()["latency_ms"]["value"] == 50.0
    assert heard == []


def test_listeners_hear_every_changed_knob():
    knobs = lab_knobs()
    heard = []
    knobs.on_change(lambda name, value: heard.append((name, value)))
    knobs.on_change(lambda name, value: heard.append(("second", name)))
    knobs.update({"workers": 3, "cache_enabled": False})
    assert heard == [("workers", 3), ("second", "workers"), ("cache_enabled", False), ("second", "cache_enabled")]


def test_listener_sees_the_new_value_applied():
    knobs = lab_knobs()
    seen = []
    knobs.on_change(lambda name, value: seen.append(knobs[name]))
    knobs.update({"workers": 9})
    assert seen == [9]


def test_snapshot_describes_type_limits_and_choices():
    snap = lab_knobs().snapshot()
    assert snap["latency_ms"] == {"value": 50.0, "type": "float", "doc": "Simulated latency.", "min": 0, "max": 1000}
    assert snap["cache_enabled"] == {"value": True, "type": "bool", "doc": "Use the cache."}
    assert snap["algorithm"]["choices"] == ["round_robin", "least_connections"]
    assert snap["workers"]["type"] == "int"


def test_knob_added_later_can_be_read_and_updated():
    knobs = lab_knobs()
    knobs.add(Knob("weight.a", 1, "Weight of a.", 0, 100))
    assert knobs["weight.a"] == 1
    knobs.update({"weight.a": 7})
    assert knobs["weight.a"] == 7
    assert "weight.a" in knobs.snapshot()


def test_a_float_knob_stores_ints_as_floats():
    knob = Knob("ratio", 0.5, "doc", 0, 1)
    assert knob.kind is float
    assert knob.coerce(1) == 1.0
    assert isinstance(knob.coerce(1), float)


def test_a_knob_refuses_an_initial_value_outside_its_limits():
    assert_400(lambda: Knob("ratio", 2.0, "doc", 0, 1), "must lie in")


def test_collect_exports_numeric_and_choice_knobs(registry):
    knobs = lab_knobs(registry)
    knobs.update({"latency_ms": 12.5, "cache_enabled": False, "algorithm": "least_connections"})

    def value(name, **labels):
        return registry.get_sample_value(name, labels)

    assert value("scalelab_knob_value", knob="latency_ms") == 12.5
    assert value("scalelab_knob_value", knob="workers") == 4.0
    assert value("scalelab_knob_value", knob="cache_enabled") == 0.0
    assert value("scalelab_knob_choice", knob="algorithm", value="least_connections") == 1.0
    assert value("scalelab_knob_choice", knob="algorithm", value="round_robin") == 0.0
    assert value("scalelab_knob_value", knob="algorithm") is None


def test_a_free_text_knob_exports_its_current_value_as_the_choice(registry):
    Knobs([Knob("mode", "fast", "Free text.")], registry)
    assert registry.get_sample_value("scalelab_knob_choice", {"knob": "mode", "value": "fast"}) == 1.0


def test_a_removed_knob_is_gone_from_reads_updates_and_snapshots():
    knobs = lab_knobs()
    knobs.add(Knob("weight.a", 1, "Weight of a.", 0, 100))
    knobs.remove("weight.a")
    assert "weight.a" not in knobs
    assert "weight.a" not in knobs.values()
    assert "weight.a" not in knobs.snapshot()
    assert_400(lambda: knobs.update({"weight.a": 3}), r"unknown knob\(s\) \['weight.a'\]")
    assert knobs["workers"] == 4  # the others are untouched


def test_removing_an_unknown_knob_names_the_known_ones():
    with pytest.raises(KeyError, match=r"no knob 'nope'.*workers"):
        lab_knobs().remove("nope")


def test_a_removed_knob_is_no_longer_exported(registry):
    knobs = lab_knobs(registry)
    knobs.add(Knob("weight.a", 2, "Weight of a.", 0, 100))
    assert registry.get_sample_value("scalelab_knob_value", {"knob": "weight.a"}) == 2.0
    knobs.remove("weight.a")
    assert registry.get_sample_value("scalelab_knob_value", {"knob": "weight.a"}) is None
    knobs.remove("algorithm")
    assert registry.get_sample_value("scalelab_knob_choice", {"knob": "algorithm", "value": "round_robin"}) is None
    assert registry.get_sample_value("scalelab_knob_value", {"knob": "workers"}) == 4.0
