"""The fault matrix covers the stack the catalog describes, and says what each fault should do."""

from __future__ import annotations

from scalelab import catalog
from scalelab.experiments.spec import load


def test_every_instance_is_killed_and_paused_with_its_expected_outcome() -> None:
    matrix = load("fault-matrix")
    acted = {(action.verb, action.target) for variant in matrix.variants for action in variant.timeline}
    for svc in catalog.lab_services():
        for instance in catalog.instance_names(svc):
            assert ("kill", instance) in acted and ("start", instance) in acted, instance
            assert ("pause", instance) in acted and ("resume", instance) in acted, instance


def test_every_latency_and_error_knob_is_turned_and_put_back() -> None:
    matrix = load("fault-matrix")
    set_knobs = [(a.target, knob, value) for v in matrix.variants for a in v.timeline if a.verb == "set"
                 for knob, value in a.knobs.items()]  # fmt: skip
    for svc in catalog.lab_services():
        for knob in svc.knobs:
            if knob.name not in ("latency_ms", "extra_latency_ms", "error_rate"):
                continue
            targets = catalog.instance_names(svc) if knob.per_instance else [svc.name]
            for target in targets:
                values = [value for where, name, value in set_knobs if where == target and name == knob.name]
                assert len(values) >= 2 and values[-1] == knob.default, (target, knob.name, values)


def test_each_row_is_short() -> None:
    matrix = load("fault-matrix")
    assert matrix.load.duration is not None and matrix.load.duration <= 5


def test_every_row_says_what_to_expect_and_checks_it() -> None:
    matrix = load("fault-matrix")
    checked = {check.variant for check in matrix.checks}
    for variant in matrix.variants:
        assert variant.expect, variant.name
        assert variant.name in checked, variant.name
        assert all(action.at is not None and action.at < (matrix.load.duration or 0) for action in variant.timeline)
