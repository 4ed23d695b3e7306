"""Experiment files: the built-in ones load, every error names the file and the field, --set overrides apply."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalelab.experiments.spec import (
    BUILTIN_DIR,
    DEFAULT_VARIANT,
    Action,
    Check,
    SpecError,
    builtin_names,
    load,
    parse,
)

BUILTINS = (
    "algorithms", "autoscaling", "caching", "circuit-breaker", "coordinated-omission", "failover", "fault-matrix",
    "load-balancing", "load-shedding", "microservice-routing", "scaling", "scaling-cpu", "stampede",
)  # fmt: skip
# Long on purpose: one row per instance and fault (its own test keeps each row short).
LONG = ("fault-matrix",)


def minimal(**extra: Any) -> dict[str, Any]:
    """Return the smallest valid experiment document, with ``extra`` fields on top."""
    return {"name": "tiny", "load": {"requests": 10, "users": 2}, **extra}


@pytest.mark.parametrize("name", builtin_names())
def test_every_built_in_experiment_loads_strictly(name: str) -> None:
    experiment = load(name)  # no duplicate key, no validation error
    # What the strict loader read is what PyYAML reads: it only refuses, it never reads differently.
    assert experiment.raw == yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text())


def test_the_built_in_experiments_ship_and_load() -> None:
    assert tuple(builtin_names()) == BUILTINS
    for name in BUILTINS:
        experiment = load(name)
        assert experiment.name == name
        assert experiment.description
        assert experiment.checks, name
        assert experiment.source == str(BUILTIN_DIR / f"{name}.yaml")


@pytest.mark.parametrize("name", [name for name in BUILTINS if name not in LONG])
def test_each_built_in_is_short_by_default(name: str) -> None:
    load_ = load(name).load
    if load_.duration is not None:
        assert load_.duration * len(load(name).variants) <= 20
    else:
        assert load_.requests is not None and load_.requests <= 200


def test_a_path_loads_the_file_and_keeps_where_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(minimal(description="mine")))
    experiment = load(str(path))
    assert (experiment.name, experiment.description, experiment.source) == ("tiny", "mine", str(path))
    assert [variant.name for variant in experiment.variants] == [DEFAULT_VARIANT]


def test_an_unknown_name_lists_the_built_in_ones() -> None:
    with pytest.raises(SpecError, match="no experiment named 'nosuch'; built-in: algorithms, autoscaling, caching"):
        load("nosuch")


def test_a_missing_yaml_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nothere\.yaml: no such experiment file"):
        load(str(tmp_path / "nothere.yaml"))


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> str:
    """Write ``text`` (dedented) to ``name`` under ``tmp_path``; return the path to load."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "load: [unclosed\n",
            "broken.yaml: line 2: not valid YAML: expected ',' or ']', but got '<stream end>'"
            " (while parsing a flow sequence from line 1)",
        ),
        ("name: x\n\tload: {}\n", "broken.yaml: line 2: not valid YAML: found character '\\t' that cannot start"),
        ("name: x\nload: *nowhere\n", "broken.yaml: line 2: not valid YAML: found undefined alias 'nowhere'"),
        ("name: x\nnotes: a\x00b\n", "broken.yaml: line 2: not valid YAML: unacceptable character #x0000"),
        ("name: x\n---\nname: y\n", "broken.yaml: line 2: not valid YAML: but found another document"),
    ],
)
def test_broken_yaml_names_the_file_and_the_line_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load(str(path))
    assert str(info.value).startswith(message), str(info.value)
    # PyYAML's own message quotes the text with a caret under it, over several lines.
    assert "\n" not in str(info.value) and "<unicode string>" not in str(info.value)


def test_a_duplicate_key_at_the_top_is_named_with_both_lines(tmp_path: Path) -> None:
    # The shape scaling.yaml once had: a line of prose that YAML read as a second load: key.
    path = write(
        tmp_path,
        """
        name: scaling
        notes: >-
          What makes the effect visible.
        load: the gateways hold 64 requests at a time, and the
          56 users fit in two instances already.
        load:
          duration: 5
        """,
        "scaling.yaml",
    )
    with pytest.raises(SpecError, match=r"^scaling\.yaml: load: duplicate key \(lines 4 and 6\)$"):
        load(path)


def test_a_duplicate_key_in_a_nested_mapping_is_named_by_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        load: {duration: 10}
        timeline:
          - {at: 1, kill: gateway-2}
          - at: 2
            set: gateway
            knobs:
              coalescing: false
              cache_ttl: 5
              coalescing: true
        """,
    )
    with pytest.raises(
        SpecError, match=r"^mine\.yaml: timeline\[1\]\.knobs\.coalescing: duplicate key \(lines 7 and 9\)$"
    ):
        load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            """
            load: {requests: 10}
            checks:
              - {metric: error_ratio, max: 0}
              - metric: p99_ms
                max: 500
                max: 50
            """,
            "mine.yaml: checks[1].max: duplicate key (lines 5 and 6)",
        ),
        (
            """
            load: {requests: 10}
            variants:
              - name: plain
              - {name: tuned, setup: [{kill: gateway-2}], name: again}
            """,
            "mine.yaml: variants[1].name: duplicate key (both on line 4)",
        ),
        (
            """
            load: {requests: 10}
            setup:
              - set: gateway
                knobs: {coalescing: false}
                knobs: {coalescing: true}
            """,
            "mine.yaml: setup[0].knobs: duplicate key (lines 4 and 5)",
        ),
        (
            """
            load: {requests: 10, mix: {process: 1, 'process': 2}}
            """,
            "mine.yaml: load.mix.process: duplicate key (both on line 1)",
        ),
    ],
)
def test_a_duplicate_key_in_a_list_item_is_named_by_its_index(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load(write(tmp_path, text))
    assert str(info.value) == message


def test_keys_a_merge_brings_in_may_be_overridden(tmp_path: Path) -> None:
    # ``<<: *anchor`` then one of its keys is how YAML overrides a merged default: not a duplicate.
    path = write(
        tmp_path,
        """
        load: {requests: 10, users: 2}
        setup:
          - set: gateway
            knobs: &defaults {cache_ttl: 1, coalescing: true}
        variants:
          - name: uncoalesced
            setup:
              - set: gateway
                knobs: {<<: *defaults, coalescing: false}
        """,
    )
    assert load(path).variants[0].setup[0].knobs == {"cache_ttl": 1, "coalescing": False}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"load": {"requests": 10}, "chekcs": []}, "x.yaml: chekcs: unknown field; known: name, description"),
        ({"name": "x"}, "x.yaml: load: missing"),
        (minimal(load={"requests": 10, "duration": 5}), "x.yaml: load: give either requests"),
        (minimal(load={"users": 2}), "x.yaml: load: give either requests"),
        (minimal(load={"requests": "many"}), "x.yaml: load.requests: must be a whole number, not 'many'"),
        (minimal(load={"requests": 10, "users": 0}), "x.yaml: load.users: must be from 1 to 200, not 0"),
        (minimal(load={"requests": 10, "users": 2.5}), "x.yaml: load.users: must be a whole number"),
        (minimal(load={"duration": -1}), "x.yaml: load.duration: must be from 0.1"),
        (minimal(load={"requests": 1, "mix": {"data_hot": 0}}), "x.yaml: load.mix: needs at least one positive"),
        (minimal(load={"requests": 1, "mix": {"cats": 1}}), "x.yaml: load.mix.cats: unknown field"),
        (minimal(load={"requests": 1, "rate": True}), "x.yaml: load.rate: must be a number, not True"),
        (minimal(setup=[{"explode": "gateway-2"}]), "x.yaml: setup[0].explode: unknown field"),
        (minimal(setup=[{"kill": "gateway-2", "start": "x"}]), "x.yaml: setup[0]: name exactly one of"),
        (minimal(setup=[{"set": "gateway"}]), "x.yaml: setup[0].knobs: set needs knobs"),
        (minimal(setup=[{"kill": "gateway-2", "knobs": {"a": 1}}]), "x.yaml: setup[0].knobs: only set takes knobs"),
        (minimal(setup=[{"add": "database"}]), "x.yaml: setup[0].add: only microservice or gateway can be added"),
        (minimal(setup=[{"kill": "gateway-2", "at": 1}]), "x.yaml: setup[0].at: unknown field"),
        (minimal(timeline=[{"kill": "gateway-2"}]), "x.yaml: timeline[0].at: missing"),
        (
            {"load": {"duration": 5}, "timeline": [{"at": 6, "kill": "gateway-2"}]},
            "x.yaml: timeline[0].at: 6 s is not before the end of the load (5 s)",
        ),
        (minimal(variants=[{"name": "a"}, {"name": "a"}]), "x.yaml: variants[1].name: 'a' is used twice"),
        (minimal(variants=[{"setup": []}]), "x.yaml: variants[0].name: must be a non-empty text"),
        (minimal(checks=[{"metric": "speed"}]), "x.yaml: checks[0].metric: unknown metric 'speed'"),
        (minimal(checks=[{"metric": "p99_ms"}]), "x.yaml: checks[0]: give min or max"),
        (minimal(checks=[{"metric": "p99_ms", "max": "fast"}]), "x.yaml: checks[0].max: must be a number"),
        (minimal(checks=[{"metric": "p99_ms", "max": 1, "variant": "b"}]), "x.yaml: checks[0].variant: no variant"),
        (minimal(checks=[{"metric": "speedup", "min": 2, "of": "p99_ms"}]), "x.yaml: checks[0]: speedup needs"),
        (minimal(checks=[{"metric": "speedup", "min": 2}]), "x.yaml: checks[0].of: speedup needs of"),
        (minimal(checks=[{"metric": "p99_ms", "max": 1, "of": "x"}]), "x.yaml: checks[0]: of and baseline"),
        (["not", "a", "mapping"], "x.yaml: the file must be a mapping"),
        # Nested errors carry the whole path, down to the list index and the field.
        (
            minimal(variants=[{"name": "a", "setup": [{"kill": "gateway-2"}, {"kill": ""}]}]),
            "x.yaml: variants[0].setup[1].kill: must be a non-empty text, not ''",
        ),
        (
            minimal(variants=[{"name": "a"}, {"name": "b", "setup": [{"add": "balancer"}]}]),
            "x.yaml: variants[1].setup[0].add: only microservice or gateway can be added",
        ),
        (minimal(variants=[{"name": "a", "setup": ["kill"]}]), "x.yaml: variants[0].setup[0]: must be a mapping"),
        (
            minimal(
                checks=[{"metric": "lost", "max": 0}, {"metric": "p50_ms", "max": 1}, {"metric": "p99_ms", "max": []}]
            ),
            "x.yaml: checks[2].max: must be a number, not []",
        ),
        (
            minimal(checks=[{"metric": "lost", "max": 0}, {"metric": "p99_ms", "max": 1, "baseline": "z"}]),
            "x.yaml: checks[1].baseline: no variant 'z'",
        ),
        (
            {"load": {"duration": 10}, "timeline": [{"at": 1, "kill": "gateway-2"}, {"at": 2, "set": "gateway"}]},
            "x.yaml: timeline[1].knobs: set needs knobs",
        ),
        (
            {"load": {"duration": 5}, "timeline": [{"at": 1, "kill": "gateway-2"}, {"at": 2, "start": 7}]},
            "x.yaml: timeline[1].start: must be a non-empty text, not 7",
        ),
        # The index is the item's place in the file, though the timeline is then sorted by time.
        (
            {"load": {"duration": 5}, "timeline": [{"at": 9, "kill": "gateway-2"}, {"at": 1, "start": "gateway-2"}]},
            "x.yaml: timeline[0].at: 9 s is not before the end of the load (5 s)",
        ),
    ],
)
def test_validation_errors_name_the_file_and_the_field(document: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(document, "x.yaml")
    assert str(info.value).startswith(message), str(info.value)


def test_the_file_s_name_is_in_errors_when_loaded_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(minimal(load={"requests": 10, "users": 999})))
    with pytest.raises(SpecError, match=r"^mine\.yaml: load\.users: must be from 1 to 200, not 999$"):
        load(str(path))


def test_a_nested_error_in_a_file_names_the_file_and_the_whole_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        load: {requests: 10}
        variants:
          - name: before
            setup:
              - {kill: gateway-2}
              - {kill: {name: gateway-1}}
        """,
    )
    with pytest.raises(SpecError, match=r"^mine\.yaml: variants\[0\]\.setup\[1\]\.kill: must be a non-empty text"):
        load(path)


def test_actions_and_checks_become_typed_values() -> None:
    experiment = parse(
        {
            "load": {"duration": 10},
            "setup": [{"set": "gateway", "knobs": {"coalescing": False}}],
            "timeline": [{"at": 5, "start": "gateway-2"}, {"at": 1, "kill": "gateway-2"}],
            "variants": [{"name": "off", "setup": [{"add": "microservice"}]}, {"name": "on"}],
            "checks": [{"metric": "speedup", "of": "p99_ms", "baseline": "off", "variant": "on", "min": 2}],
        },
        "x.yaml",
    )
    assert experiment.setup == (Action("set", "gateway", {"coalescing": False}),)
    # The timeline runs in time order, whatever the order in the file.
    assert experiment.timeline == (Action("kill", "gateway-2", at=1.0), Action("start", "gateway-2", at=5.0))
    assert experiment.variants[0].setup == (Action("add", "microservice"),)
    assert experiment.checks == (Check("speedup", min=2.0, variant="on", of="p99_ms", baseline="off"),)
    assert experiment.checks[0].describe() == "speedup of p99_ms (off -> on) >= 2"
    assert experiment.setup[0].describe() == "set gateway coalescing=False"


def test_share_metrics_name_any_instance() -> None:
    experiment = parse(minimal(checks=[{"metric": "share.microservice-3", "max": 0.2}]), "x.yaml")
    assert experiment.checks[0].describe() == "share.microservice-3 <= 0.2"


def test_overrides_set_dotted_fields_and_read_values_as_yaml() -> None:
    experiment = load(
        "failover",
        {"load.duration": "20", "load.mix.process": 100, "checks.2.max": "0.5", "load.seed": 7, "name": "mine"},
    )
    assert experiment.load.duration == 20.0
    assert experiment.load.mix["process"] == 100
    assert experiment.load.seed == 7
    assert experiment.name == "mine"
    assert experiment.checks[2] == Check("detection_seconds", max=0.5)
    # The report shows the configuration as run, overrides included.
    assert experiment.raw["load"]["duration"] == 20


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"checks.9.max": 1}, "--set checks.9.max: checks.9 is not an index of a list of 4"),
        ({"load.users.x": 1}, "--set load.users.x: load.users is a value, not a mapping"),
        ({"load..users": 1}, "--set 'load..users': give a dotted field"),
        ({"load.duration": "soon"}, "load.duration: must be a number, not 'soon'"),
        ({"load.requests": 5}, "load: give either requests (exactly that many) or duration"),
        # A value that is not YAML without duplicates stays the text it was, and then fails as one.
        ({"load.mix": "{process: 1, process: 2}"}, "load.mix: must be a mapping, not '{process: 1, process: 2}'"),
    ],
)
def test_bad_overrides_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        load("load-balancing" if "checks" in next(iter(overrides)) else "failover", overrides)
    assert message in str(info.value)


def test_a_scaling_law_needs_every_variant_to_say_its_instances_at_three_counts_or_more():
    base = {"load": {"requests": 10}, "scaling_law": "throughput_rps"}
    variants = [{"name": f"{n}", "instances": n} for n in (1, 2, 3)]
    assert parse({**base, "variants": variants}, "x.yaml").scaling_law == "throughput_rps"
    for bad, message in (
        ({"variants": variants[:2]}, "3 or more instance counts"),
        ({"variants": [*variants, {"name": "4"}]}, "needs its instances"),
        ({"variants": variants, "scaling_law": "p99_ms"}, "fits one of throughput_rps"),
        ({"variants": [{"name": "0", "instances": 0}, *variants]}, "instances"),
    ):
        with pytest.raises(SpecError, match=message):
            parse({**base, **bad}, "x.yaml")


def test_the_load_model_is_closed_unless_told_and_a_variant_may_change_it() -> None:
    assert parse(minimal(), "mine.yaml").load.model == "closed"
    document = minimal(variants=[{"name": "open", "model": "open"}, {"name": "closed"}])
    document["load"]["rate"] = 20
    experiment = parse(document, "mine.yaml")
    assert [variant.model for variant in experiment.variants] == ["open", None]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (minimal(load={"requests": 10, "model": "open"}), r"load\.model: open needs load\.rate"),
        (minimal(load={"requests": 10, "rate": 5, "model": "ajar"}), r"load\.model: is one of closed, open"),
        (minimal(variants=[{"name": "v", "model": "open"}]), r"variants\[0\]\.model: open needs load\.rate"),
    ],
)
def test_a_load_model_that_cannot_run_is_refused_naming_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse(document, "mine.yaml")


def test_a_load_shape_needs_a_duration_a_rate_and_a_peak() -> None:
    document = minimal(load={"duration": 10, "rate": 10, "shape": "ramp", "peak_rate": 40})
    load_ = parse(document, "mine.yaml").load
    assert (load_.shape, load_.peak_rate, load_.rate_at(5)) == ("ramp", 40, 25)
    for bad, message in (
        ({"requests": 10, "rate": 10, "shape": "ramp", "peak_rate": 40}, "ramp needs duration, rate and peak_rate"),
        ({"duration": 10, "rate": 10, "shape": "sawtooth"}, "is one of constant, ramp, steps, spike"),
    ):
        with pytest.raises(SpecError, match=message):
            parse(minimal(load=bad), "mine.yaml")


def test_an_autoscaler_block_gives_every_variant_an_autoscaler_unless_it_opts_out() -> None:
    document = minimal(
        autoscaler={"target": 0.7, "max_instances": 6, "watch_after": 20},
        variants=[{"name": "scaled"}, {"name": "fixed", "autoscale": False}],
    )
    experiment = parse(document, "mine.yaml")
    assert experiment.autoscaler is not None
    assert (experiment.autoscaler.service, experiment.autoscaler.target) == ("microservice", 0.7)
    assert (experiment.autoscaler.min_instances, experiment.autoscaler.max_instances) == (3, 6)
    assert experiment.autoscale_after == 20
    assert [variant.autoscale for variant in experiment.variants] == [True, False]
    assert parse(minimal(), "mine.yaml").autoscaler is None


@pytest.mark.parametrize(
    ("autoscaler", "message"),
    [
        ({"target": "high"}, "autoscaler.target: must be a number"),
        ({"min_instances": 5, "max_instances": 4}, "autoscaler: microservice: need 1 <= min_instances"),
        ({"service": "database"}, "autoscaler: the autoscaler scales a service that scales"),
        ({"signal": "queue"}, "autoscaler: signal is one of"),
        ({"watch_after": 1000}, "autoscaler.watch_after: must be from 0 to 120"),
        ({"tagret": 1}, "autoscaler.tagret: unknown field"),
        ([1], "autoscaler: must be a mapping"),
    ],
)
def test_an_autoscaler_that_cannot_work_is_refused_naming_the_field(autoscaler: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse(minimal(autoscaler=autoscaler), "mine.yaml")


def test_a_variants_autoscale_is_true_or_false() -> None:
    with pytest.raises(SpecError, match=r"variants\[0\].autoscale: is true or false"):
        parse(minimal(variants=[{"name": "v", "autoscale": "no"}]), "mine.yaml")
