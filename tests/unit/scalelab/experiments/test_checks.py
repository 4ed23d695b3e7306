"""Checks: each threshold passes or fails with the measured value, and a failure says where and by how much."""

from __future__ import annotations

import pytest

from scalelab.experiments.checks import evaluate, speedup
from scalelab.experiments.spec import Check

VARIANTS = {
    "off": {"p99_ms": 120.0, "error_ratio": 0.0, "database_reads": 60.0, "throughput_rps": 100.0},
    "on": {"p99_ms": 80.0, "error_ratio": 0.02, "database_reads": 6.0, "throughput_rps": 150.0},
}


def test_a_check_on_every_variant_reports_the_worst_one() -> None:
    [passed] = evaluate([Check("p99_ms", max=200)], VARIANTS)
    assert passed.passed and passed.value == 120.0 and passed.variant == "off"
    [failed] = evaluate([Check("error_ratio", max=0.01)], VARIANTS)
    assert not failed.passed
    assert failed.message == "error_ratio was 0.02 in 'on', above the maximum 0.01"
    assert failed.label == "error_ratio <= 0.01"


def test_a_minimum_names_the_lowest_variant() -> None:
    [result] = evaluate([Check("throughput_rps", min=120)], VARIANTS)
    assert not result.passed
    assert (result.variant, result.value) == ("off", 100.0)
    assert "below the minimum 120" in result.message


def test_a_check_can_name_one_variant() -> None:
    [result] = evaluate([Check("database_reads", max=6, variant="on")], VARIANTS)
    assert result.passed and result.value == 6.0
    assert result.label == "database_reads [on] <= 6"


def test_a_value_not_measured_fails_the_check() -> None:
    [result] = evaluate([Check("detection_seconds", max=1)], VARIANTS)
    assert not result.passed and result.value is None
    assert result.message == "detection_seconds was not measured"


@pytest.mark.parametrize(
    ("check", "value", "passed"),
    [
        (Check("speedup", min=5, of="database_reads", baseline="off", variant="on"), 10.0, True),
        (Check("speedup", min=1.6, of="throughput_rps", baseline="off", variant="on"), 1.5, False),
        (Check("speedup", min=1.4, of="p99_ms", baseline="off", variant="on"), 1.5, True),
    ],
)
def test_speedup_divides_so_that_better_is_above_one(check: Check, value: float, passed: bool) -> None:
    [result] = evaluate([check], VARIANTS)
    assert result.value == pytest.approx(value)
    assert result.passed is passed
    if not passed:
        assert result.message.endswith(", not >= 1.6")


def test_speedup_of_nothing_is_infinite_and_of_unmeasured_is_none() -> None:
    assert speedup("database_reads", 10, 0) == float("inf")
    assert speedup("database_reads", 0, 0) is None
    assert speedup("p99_ms", None, 3) is None


def test_both_bounds_must_hold() -> None:
    [result] = evaluate([Check("p99_ms", min=90, max=200)], VARIANTS)
    assert not result.passed and result.variant == "on"
