"""Lesson files: the shipped ones load, and a broken one is refused naming the file and the field."""

from __future__ import annotations

import textwrap

import pytest

from scalelab.lessons.spec import Choice, LessonError, builtin_lessons, load, parse

# The list: load balancing, cache-aside, coalescing, async work, failover, algorithms, scaling
# out, and one per tactic the stack gained (shedding, breakers, autoscaling, coordinated omission).
SHIPPED = (
    "algorithms", "async-work", "autoscaling", "cache-aside", "circuit-breakers", "coordinated-omission", "failover",
    "load-balancing", "overload-and-shedding", "scaling-out", "stampede",
)  # fmt: skip

GOOD = """\
---
name: tiny
title: A tiny lesson
goal: Check the reader.
predictions:
  - id: p99
    question: The p99, in ms?
    unit: ms
    measured: {step: send, metric: p99_ms}
  - id: fast
    question: Fast or slow?
    measured: {step: send, metric: p50_ms}
    choices:
      - {label: fast, max: 100}
      - {label: slow, min: 100}
steps:
  - id: send
    title: Send some
    do: Ten requests.
    experiment: {name: tiny, load: {requests: 10, users: 2}}
try_next:
  - "Send more: a hundred."
---
Intro words.

## Background

Why this matters.

## Why

Because.

## Going further

More.
"""


def lesson_text(**changes: str) -> str:
    text = GOOD
    for old, new in changes.items():
        assert old.replace("_", " ") in text or old in text
        text = text.replace(old, new)
    return text


def test_every_shipped_lesson_loads_with_predictions_steps_and_explanations():
    assert tuple(builtin_lessons()) == SHIPPED
    for name in SHIPPED:
        lesson = load(name)
        assert lesson.name == name and lesson.predictions and lesson.steps
        assert lesson.background and lesson.why, name


def test_a_lesson_reads_its_header_and_its_sections():
    lesson = parse(GOOD, "tiny.md")
    assert (lesson.name, lesson.title, lesson.goal) == ("tiny", "A tiny lesson", "Check the reader.")
    assert [p.id for p in lesson.predictions] == ["p99", "fast"]
    assert lesson.predictions[1].choices == (Choice("fast", max=100.0), Choice("slow", min=100.0))
    assert lesson.steps[0].variants == ("default",)
    assert (lesson.background, lesson.why) == ("Why this matters.", "Because.")
    assert lesson.more == {"Going further": "More."}
    assert lesson.try_next == ("Send more: a hundred.",)


def test_a_choice_answer_is_the_range_the_measured_value_falls_in():
    fast = parse(GOOD, "tiny.md").prediction("fast")
    assert (fast.answer_of(99.9), fast.answer_of(100.0), fast.answer_of(None)) == ("fast", "slow", None)
    assert fast.coerce("slow") == "slow"
    with pytest.raises(ValueError, match=r"fast: one of \['fast', 'slow'\]"):
        fast.coerce("medium")


def test_a_number_prediction_takes_numbers_only():
    p99 = parse(GOOD, "tiny.md").prediction("p99")
    assert p99.coerce("12.5") == 12.5
    for bad in ("soon", "nan", True, None):
        with pytest.raises(ValueError, match="p99: a number"):
            p99.coerce(bad)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("name: tiny", "name: Tiny Lesson", "tiny.md: name: must be a short name"),
        ("metric: p99_ms", "metric: p100_ms", r"predictions\[0\].measured.metric: unknown metric 'p100_ms'"),
        ("{step: send, metric: p99_ms}", "{step: other, metric: p99_ms}", r"measured.step: no step 'other'"),
        ("experiment: {name: tiny", "experiment: {nme: tiny", r"steps\[0\].experiment: nme: unknown field"),
        ("experiment: {name: tiny, load: {requests: 10, users: 2}}", "experiment: nosuch", "no built-in experiment"),
        ("goal: Check the reader.\n", "", "tiny.md: goal: missing"),
        ("title: Send some", "title: Send some\n    when: now", r"steps\[0\].when: unknown field"),
        ("{label: fast, max: 100}", "{label: fast, max: soon}", r"choices\[0\].max: must be a number"),
        ("  - id: fast", "  - id: p99", r"predictions\[1\].id: 'p99' is used twice"),
    ],
)
def test_a_broken_lesson_is_refused_naming_the_file_and_the_field(old: str, new: str, message: str):
    assert old in GOOD
    with pytest.raises(LessonError, match=message):
        parse(GOOD.replace(old, new), "tiny.md")


def test_a_variant_must_be_named_when_the_experiment_has_several():
    text = GOOD.replace("{step: send, metric: p99_ms}", "{step: send, metric: p99_ms, variant: nope}")
    with pytest.raises(LessonError, match="step 'send' has no variant 'nope'; it has \\['default'\\]"):
        parse(text, "tiny.md")
    shedding = load("overload-and-shedding").steps[0]
    assert shedding.variants == ("no shedding", "fixed limit", "adaptive limit")
    broken = textwrap.dedent(
        """\
        ---
        name: x
        title: X
        goal: X.
        predictions:
          - {id: a, question: "A?", measured: {step: s, metric: p99_ms}}
        steps:
          - {id: s, title: S, do: S., experiment: load-shedding}
        ---
        """
    )
    with pytest.raises(LessonError, match=r"step 's' runs variants .*: name one"):
        parse(broken, "x.md")


def test_a_file_without_a_header_or_an_unknown_name_says_what_a_lesson_is(tmp_path):
    with pytest.raises(LessonError, match="starts with a YAML header between two lines of ---"):
        parse("# just markdown\n", "plain.md")
    with pytest.raises(LessonError, match="no lesson named 'nosuch'; built-in: algorithms, async-work"):
        load("nosuch")
    with pytest.raises(LessonError, match="no such lesson file"):
        load(tmp_path / "missing.md")
    mine = tmp_path / "mine.md"
    mine.write_text(GOOD)
    assert load(mine).name == "tiny" and load(str(mine)).source == str(mine)
